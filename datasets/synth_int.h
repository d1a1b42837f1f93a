/* synth_int.h — private to the synthetic corpus generator: the table types shared by the data
 * tables (dataset_synth_tables.c) and the composer (dataset_synth.c). */
#ifndef NY_SYNTH_INT_H
#define NY_SYNTH_INT_H

#include <stddef.h>

/* Body regions: an exam images one region; scenarios and normal statements belong to regions. */
enum synth_region {
    R_HEAD, R_HEADVASC, R_CHEST, R_CHEST_PE, R_CHEST_XR, R_ABD, R_ABD_US, R_RUQ, R_KIDNEY,
    R_ABD_XR, R_PELVIS_F, R_CSPINE, R_LSPINE, R_SHOULDER, R_WRIST, R_HIP, R_KNEE, R_LEG,
    R_ANKLE, R_FOOT, R_BREAST, R_SCREEN, R_THYROID, R_CAROTID, R_VEINS, R_HEART, R_BONE,
    R_VQ, R_PET, R_HIDA, R_LIVER, R_COUNT
};

/* A code that may depend on the side: right, left, both (NULL when not lateral: r only). */
struct synth_code {
    const char *r, *l, *b;
};

struct synth_exam {
    const char *modality;       /* CT, MRI, US, XR, MG, NM */
    const char *desc;           /* exam description as ordered */
    const char *cpt, *cpt2;     /* cpt2 for two-code exams */
    int region;
    int region2;                /* second region for two-region exams, or -1 */
    int lateral;                /* 0 none, 1 one side (RT/LT), 2 one side or both (50) */
    const char *distinct;       /* "59" / "XU" for two-code exams billed as distinct, or NULL */
};

/* Something the report can say about a region. */
struct synth_finding {
    int group;              /* the indications it confirms */
    struct synth_code icd;
    const char *finding;    /* sentence in FINDINGS; "%s" is the side word when lateral */
    const char *impression; /* sentence in IMPRESSION */
};

/* An indication: the symptom (coded when the study is negative) and what it may turn out to be. */
struct synth_indication {
    int region;
    int lateral;                  /* 1 when the text and code take the exam's side */
    const char *text;             /* "%s" is the side word when lateral */
    struct synth_code icd;        /* the symptom's code */
    const char *rule_out;         /* "rule out X" wording (never coded), or NULL */
    int group;                    /* findings of this group confirm it */
};

/* An incidental finding: coded only when the impression lists it. */
struct synth_incidental {
    unsigned region_mask;         /* bit per region (R_COUNT <= 32) */
    const char *icd;
    const char *finding;
    const char *impression;
};

extern const struct synth_exam synth_exams[];
extern const size_t synth_nexams;
extern const struct synth_finding synth_findings[];
extern const size_t synth_nfindings;
extern const struct synth_indication synth_indications[];
extern const size_t synth_nindications;
extern const struct synth_incidental synth_incidentals[];
extern const size_t synth_nincidentals;
/* Normal statements per region, NULL-terminated lists. */
extern const char *const *const synth_normals[R_COUNT];
/* Negations per region ("No acute fracture."), NULL-terminated. */
extern const char *const *const synth_negations[R_COUNT];

/* Never-coded context sentences: history, modality technique (CT, MRI, US, XR, MG, NM), closing. */
extern const char *const synth_history_extras[];
extern const char *const *const synth_modality_extras[6];
extern const char *const synth_closing_extras[];

#endif
