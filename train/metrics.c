/* Metrics sinks: metrics.jsonl (one cJSON object per record, non-finite values kept as flagged strings because cJSON
 * would print them as null), the TensorBoard event file beside it, and the console progress line. */
#include "train/metrics.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct train_metrics {
    FILE *jsonl;
    char *jsonl_path;
    train_tb_writer *tb;
    char *tb_path;
};

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    SX_ASSERT(p, "out of memory");
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

sx_status train_metrics_open(const char *dir, train_metrics **out) {
    *out = NULL;
    if (!dir || !dir[0]) return sx_errorf("metrics: empty run directory");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return sx_errorf("%s: cannot create run directory: %s", dir, strerror(errno));
    train_metrics *m = calloc(1, sizeof *m);
    SX_ASSERT(m, "out of memory");
    m->jsonl_path = path_join(dir, "metrics.jsonl");
    m->jsonl = fopen(m->jsonl_path, "a");
    if (!m->jsonl) {
        sx_status s = sx_errorf("%s: cannot open for appending: %s", m->jsonl_path, strerror(errno));
        train_metrics_close(m);
        return s;
    }
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    double now = wall_now();
    char name[512];
    sx_status s = sx_ok();
    /* Two opens in the same second on one host would collide; TensorBoard reads every *tfevents* file, so a suffix
     * keeps both. */
    for (int k = 0; k < 100; k++) {
        if (k == 0)
            snprintf(name, sizeof name, "events.out.tfevents.%lld.%s", (long long)now, host);
        else
            snprintf(name, sizeof name, "events.out.tfevents.%lld.%s.%d", (long long)now, host, k);
        free(m->tb_path);
        m->tb_path = path_join(dir, name);
        if (access(m->tb_path, F_OK) == 0) continue;
        s = train_tb_open(m->tb_path, now, &m->tb);
        break;
    }
    if (s.ok && !m->tb) s = sx_errorf("%s: 100 event files for this second already exist", m->tb_path);
    if (!s.ok) {
        train_metrics_close(m);
        return s;
    }
    *out = m;
    return sx_ok();
}

const char *train_metrics_events_path(const train_metrics *m) { return m ? m->tb_path : NULL; }

static bool reserved_name(const char *s) { return !strcmp(s, "step") || !strcmp(s, "wall_time") || !strcmp(s, "nonfinite"); }

sx_status train_metrics_log(train_metrics *m, int64_t step, int n, const char *const *names, const double *values) {
    if (!m) return sx_errorf("metrics: log on a NULL handle");
    if (n < 0 || (n > 0 && (!names || !values))) return sx_errorf("%s: bad metric list (n = %d)", m->jsonl_path, n);
    for (int i = 0; i < n; i++) {
        if (!names[i] || !names[i][0]) return sx_errorf("%s: metric %d has an empty name", m->jsonl_path, i);
        if (reserved_name(names[i])) return sx_errorf("%s: metric name '%s' is reserved", m->jsonl_path, names[i]);
        for (int j = 0; j < i; j++)
            if (!strcmp(names[i], names[j]))
                return sx_errorf("%s: metric '%s' appears twice in one record", m->jsonl_path, names[i]);
    }
    double now = wall_now();
    cJSON *o = cJSON_CreateObject();
    cJSON *bad = NULL;
    SX_ASSERT(o, "out of memory");
    cJSON_AddNumberToObject(o, "step", (double)step);
    cJSON_AddNumberToObject(o, "wall_time", now);
    for (int i = 0; i < n; i++) {
        double v = values[i];
        if (isfinite(v)) {
            cJSON_AddNumberToObject(o, names[i], v);
            continue;
        }
        cJSON_AddStringToObject(o, names[i], isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
        if (!bad) bad = cJSON_CreateArray();
        cJSON_AddItemToArray(bad, cJSON_CreateString(names[i]));
    }
    if (bad) cJSON_AddItemToObject(o, "nonfinite", bad);
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    SX_ASSERT(line, "out of memory");
    bool ok = fputs(line, m->jsonl) >= 0 && fputc('\n', m->jsonl) != EOF && fflush(m->jsonl) == 0;
    free(line);
    if (!ok) return sx_errorf("%s: write failed: %s", m->jsonl_path, strerror(errno));
    return train_tb_write_scalars(m->tb, step, now, n, names, values);
}

sx_status train_metrics_flush(train_metrics *m) {
    if (!m) return sx_errorf("metrics: flush on a NULL handle");
    if (fflush(m->jsonl) != 0 || fsync(fileno(m->jsonl)) != 0)
        return sx_errorf("%s: flush failed: %s", m->jsonl_path, strerror(errno));
    return train_tb_flush(m->tb);
}

void train_metrics_close(train_metrics *m) {
    if (!m) return;
    if (m->jsonl) fclose(m->jsonl);
    train_tb_close(m->tb);
    free(m->jsonl_path);
    free(m->tb_path);
    free(m);
}

/* ---- progress ----------------------------------------------------------------------------------------------------- */

static void fmt_duration(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e9) {
        snprintf(buf, cap, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t < 60)
        snprintf(buf, cap, "%lds", t);
    else if (t < 3600)
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(buf, cap, "%ldh%02ldm", t / 3600, t % 3600 / 60);
    else
        snprintf(buf, cap, "%ldd%02ldh", t / 86400, t % 86400 / 3600);
}

void train_progress_init(train_progress *p, int64_t total_steps) {
    p->total = total_steps;
    p->t_start = mono_now();
    p->last_print = -1;
    p->tty = isatty(fileno(stderr));
    p->first_step = -1;
    p->t_first = p->t_start;
}

void train_progress_format(const train_progress *p, int64_t step, double now, const char *extra, char *buf, size_t cap) {
    enum { W = 20 };
    double frac = p->total > 0 ? (double)step / (double)p->total : 0;
    frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
    char bar[W + 1];
    int full = (int)(frac * W);
    for (int i = 0; i < W; i++) bar[i] = i < full ? '#' : '-';
    bar[W] = 0;
    char elapsed[32], eta[32] = "?", rate[48] = "? step/s";
    fmt_duration(now - p->t_start, elapsed, sizeof elapsed);
    if (p->first_step >= 0 && step > p->first_step && now > p->t_first) {
        double r = (double)(step - p->first_step) / (now - p->t_first);
        snprintf(rate, sizeof rate, r >= 10 ? "%.0f step/s" : r >= 0.1 ? "%.2f step/s" : "%.1f s/step", r >= 0.1 ? r : 1 / r);
        fmt_duration((double)(p->total - step) / r, eta, sizeof eta);
    }
    snprintf(buf, cap, "step %lld/%lld [%s] %5.1f%% | %s | elapsed %s | ETA %s%s%s", (long long)step,
             (long long)p->total, bar, 100 * frac, rate, elapsed, eta, extra && extra[0] ? " | " : "", extra ? extra : "");
}

void train_progress_update(train_progress *p, int64_t step, const char *extra) {
    double now = mono_now();
    if (p->first_step < 0) {
        p->first_step = step;
        p->t_first = now;
    }
    bool last = step >= p->total;
    double gap = p->tty ? 0.1 : TRAIN_PROGRESS_PLAIN_SECONDS;
    if (p->last_print >= 0 && now - p->last_print < gap && !last) return;
    char line[1024];
    train_progress_format(p, step, now, extra, line, sizeof line);
    if (p->tty)
        fprintf(stderr, "\r%s\x1b[K", line);
    else
        fprintf(stderr, "%s\n", line);
    fflush(stderr);
    p->last_print = now;
}

void train_progress_done(train_progress *p) {
    char t[32];
    fmt_duration(mono_now() - p->t_start, t, sizeof t);
    fprintf(stderr, "%sdone in %s\n", p->tty && p->last_print >= 0 ? "\n" : "", t);
    fflush(stderr);
}

double train_peak_rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    if (f) fclose(f);
    if (kb >= 0) return kb / 1024.0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}
