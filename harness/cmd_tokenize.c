/* cmd_tokenize.c — `nyxaudit tokenize --tokenizer FILE [--special]`: UTF-8 text on stdin, its
 * token ids on stdout on one line, separated by spaces. --special also adds the tokens the
 * tokenizer.json post-processor adds (a TemplateProcessing BOS; nothing for a ByteLevel one). */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "harness_int.h"

#define TOKENIZE_STDIN_MAX ((size_t)1 << 30)

static int usage(void)
{
    fprintf(stderr,
            "usage: nyxaudit tokenize --tokenizer FILE [--special] < text > ids\n"
            "  --tokenizer FILE  a Hugging Face tokenizer.json (byte-level BPE)\n"
            "  --special         add the post-processor's special tokens (BOS when the\n"
            "                    tokenizer.json has a TemplateProcessing post-processor)\n");
    return HARNESS_EXIT_INVALID;
}

static int print_ids(const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (printf(i ? " %d" : "%d", ids[i]) < 0)
            return NY_E_IO;
    if (printf("\n") < 0 || fflush(stdout) != 0)
        return NY_E_IO;
    return NY_OK;
}

int harness_cmd_tokenize(int argc, char **argv)
{
    const char *path = NULL;
    int special = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--special") == 0)
            special = 1;
        else
            return usage();
    }
    if (!path)
        return usage();
    struct ny_err err;
    ny_err_init(&err);
    struct engine_tokenizer *tok = NULL;
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    int rc = engine_tokenizer_open(path, &tok, &err);
    if (!rc)
        rc = ny_stream_read(stdin, "stdin", TOKENIZE_STDIN_MAX, &text, &len, &err);
    if (!rc)
        rc = engine_tokenizer_encode(tok, text ? text : "", len, special, &ids, &n, &err);
    if (!rc && print_ids(ids, n))
        rc = NY_ERR(&err, NY_E_IO, "stdout: write failed");
    ny_free(ids);
    ny_free(text);
    engine_tokenizer_close(tok);
    return rc ? harness_fail("tokenize", rc, &err) : HARNESS_EXIT_OK;
}
