/* An audio mixer that adapts to Sesco's set-points (the C demo application).
 *
 * Every 100 ms it mixes `sample_rate / 10` frames of `channels` channels (the levels'
 * values; `quality` scales the filter). On each set-point it prints one JSON line: what it
 * was told, and the CPU cap the kernel enforces on it at that moment (read from its own
 * cgroup), so the order "told, then shrunk" and "grown, then told" can be seen; then it
 * acknowledges. It reports the frame rate it achieves every second.
 *
 * Build: cc -O2 -I arq/c/include arq/c/examples/mixer.c target/release/libsesco_control.a \
 *           -lpthread -ldl -lm -o mixer
 */
#include <math.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sesco_control.h"

/* Whether the comma-separated `list` holds `name`. */
static int listed(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

/* This process's cgroup directory holding `controller` ("" for cgroup v2). */
static int cgroup_dir(const char *controller, char *out, size_t len) {
    FILE *membership = fopen("/proc/self/cgroup", "r");
    char line[4096];
    int found = 0;
    if (!membership) return 0;
    while (!found && fgets(line, sizeof line, membership)) {
        char *controllers = strchr(line, ':');
        char *path = controllers ? strchr(controllers + 1, ':') : NULL;
        if (!path) continue;
        *path++ = '\0';
        controllers++;
        path[strcspn(path, "\n")] = '\0';
        int v2 = controllers[0] == '\0';
        if (controller[0] == '\0' ? !v2 : !listed(controllers, controller)) continue;
        FILE *mounts = setmntent("/proc/self/mounts", "r");
        struct mntent *m;
        while (mounts && (m = getmntent(mounts))) {
            int is_v2 = strcmp(m->mnt_type, "cgroup2") == 0;
            int is_v1 = strcmp(m->mnt_type, "cgroup") == 0;
            if ((controller[0] == '\0' && is_v2) ||
                (controller[0] != '\0' && is_v1 && hasmntopt(m, controller))) {
                snprintf(out, len, "%s%s", m->mnt_dir, path);
                found = 1;
                break;
            }
        }
        if (mounts) endmntent(mounts);
    }
    fclose(membership);
    return found;
}

static int read_two(const char *path, const char *format, long *a, long *b) {
    FILE *f = fopen(path, "r");
    int n = f ? fscanf(f, format, a, b) : 0;
    if (f) fclose(f);
    return n;
}

/* The CPU cap the kernel enforces on this process now, in CPUs (-1 if none). */
static double kernel_cpu(void) {
    char dir[4096], file[4200];
    long quota, period;
    if (cgroup_dir("", dir, sizeof dir)) {
        snprintf(file, sizeof file, "%s/cpu.max", dir);
        if (read_two(file, "%ld %ld", &quota, &period) == 2 && period > 0) return (double)quota / period;
    }
    if (cgroup_dir("cpu", dir, sizeof dir)) {
        snprintf(file, sizeof file, "%s/cpu.cfs_quota_us", dir);
        if (read_two(file, "%ld%ld", &quota, &period) >= 1 && quota > 0) {
            snprintf(file, sizeof file, "%s/cpu.cfs_period_us", dir);
            if (read_two(file, "%ld%ld", &period, &period) >= 1 && period > 0) return (double)quota / period;
        }
    }
    return -1;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void) {
    char error[512];
    sesco_control *port = sesco_control_open(error, sizeof error);
    if (!port) {
        fprintf(stderr, "mixer: %s\n", error);
        return 2;
    }
    double rate = 8000, channels = 2, quality = 1, phase = 0, since = now();
    long frames = 0;
    for (;;) {
        sesco_setpoint *sp;
        int got = sesco_control_next(port, 0, &sp);
        if (got < 0) {
            fprintf(stderr, "mixer: %s\n", sesco_control_last_error(port));
            return 1;
        }
        if (got == 1) {
            rate = sesco_setpoint_value(sp, "sample_rate", rate);
            channels = sesco_setpoint_value(sp, "channels", channels);
            quality = sesco_setpoint_value(sp, "quality", quality);
            char direction[32];
            snprintf(direction, sizeof direction, "%s", sesco_setpoint_direction(sp));
            if (direction[0] >= 'a' && direction[0] <= 'z') direction[0] = (char)(direction[0] - 'a' + 'A');
            printf("{\"sequence\":%llu,\"direction\":\"%s\",\"setpoint\":\"",
                   (unsigned long long)sesco_setpoint_sequence(sp), direction);
            for (size_t i = 0; i < sesco_setpoint_level_count(sp); i++)
                printf("%s%s=%s", i ? "," : "", sesco_setpoint_dimension(sp, i), sesco_setpoint_level(sp, i));
            double cap = kernel_cpu();
            printf("\",\"reservation_cpu\":%.6f,\"kernel_cpu\":", sesco_setpoint_cpus(sp));
            if (cap >= 0) printf("%.6f", cap); else printf("null");
            printf(",\"protocol\":%u}\n", sesco_control_version(port));
            fflush(stdout);
            sesco_control_ack(port, sp);
            sesco_setpoint_free(sp);
        }
        double tick = now();
        long n = (long)(rate / 10);
        double mixed = 0;
        for (long f = 0; f < n; f++)
            for (int c = 0; c < (int)channels; c++)
                for (int k = 0; k < (int)(4 * quality); k++)
                    mixed += sin(phase + f * 0.001 + c + k * 0.1);
        phase += n * 0.001;
        frames += n;
        if (tick - since >= 1.0) {
            const char *names[] = {"sample_rate"};
            double values[] = {frames / (tick - since)};
            sesco_control_report(port, names, values, 1);
            frames = 0;
            since = tick;
        }
        double left = 0.1 - (now() - tick);
        if (left > 0) {
            struct timespec pause = {0, (long)(left * 1e9)};
            nanosleep(&pause, NULL);
        }
        if (mixed == 12345.678) puts("");  /* keeps the mixing from being optimised away */
    }
}
