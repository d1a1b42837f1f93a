/* cpu_pool.c — a fixed pthread pool: tasks (fixed-size blocks of work) are handed out from an
 * atomic counter; the caller's thread works too. Results never depend on who ran which task. */
#include <pthread.h>
#include <stdatomic.h>

#include "cpu_int.h"

struct cpu_pool {
    int n_workers;
    pthread_t *threads;
    struct pool_arg *args;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    unsigned long generation; /* bumped per job */
    int quit;
    int busy;                 /* workers still inside the current job */
    cpu_task_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next;
};

static void pool_drain(struct cpu_pool *p, int thread)
{
    for (;;) {
        int t = atomic_fetch_add(&p->next, 1);
        if (t >= p->n_tasks)
            return;
        p->fn(p->ctx, t, thread);
    }
}

struct pool_arg {
    struct cpu_pool *p;
    int thread;
};

static void *pool_worker(void *arg)
{
    struct cpu_pool *p = ((struct pool_arg *)arg)->p;
    int thread = ((struct pool_arg *)arg)->thread;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->generation == seen)
            pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->quit)
            break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        pool_drain(p, thread);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0)
            pthread_cond_signal(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int cpu_pool_create(int n_threads, struct cpu_pool **out, struct ny_err *err)
{
    if (n_threads < 1 || n_threads > 1024)
        return NY_ERR(err, NY_E_INVALID, "threads: %d is out of range 1..1024", n_threads);
    struct cpu_pool *p = ny_calloc(1, sizeof *p);
    if (!p)
        return NY_ERR(err, NY_E_NOMEM, "out of memory for the thread pool");
    p->n_workers = n_threads - 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    if (p->n_workers > 0) {
        p->threads = ny_calloc((size_t)p->n_workers, sizeof *p->threads);
        p->args = ny_calloc((size_t)p->n_workers, sizeof *p->args);
        if (!p->threads || !p->args) {
            cpu_pool_destroy(p);
            return NY_ERR(err, NY_E_NOMEM, "out of memory for the thread pool");
        }
    }
    for (int i = 0; i < p->n_workers; i++) {
        p->args[i].p = p;
        p->args[i].thread = i + 1;
        if (pthread_create(&p->threads[i], NULL, pool_worker, &p->args[i]) != 0) {
            p->n_workers = i;
            cpu_pool_destroy(p);
            return NY_ERR(err, NY_E_INTERNAL, "cannot start worker thread %d", i);
        }
    }
    *out = p;
    return NY_OK;
}

void cpu_pool_destroy(struct cpu_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    ny_free(p->threads);
    ny_free(p->args);
    ny_free(p);
}

void cpu_pool_run(struct cpu_pool *p, int n_tasks, cpu_task_fn fn, void *ctx, double work)
{
    if (n_tasks <= 0)
        return;
    if (p->n_workers == 0 || n_tasks == 1 || work < CPU_POOL_MIN_WORK) {
        for (int t = 0; t < n_tasks; t++)
            fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next, 0);
    p->busy = p->n_workers;
    p->generation++;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    pool_drain(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0)
        pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
