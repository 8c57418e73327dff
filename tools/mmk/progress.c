/* tools/mmk/progress.c — the progress bar (see progress.h). */
#include "progress.h"

#include <stdio.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* Show a bar only for work lasting longer than this (seconds). */
#define PROGRESS_DELAY 0.5
/* Width when the terminal does not say. */
#define DEFAULT_COLUMNS 80
/* Columns taken by everything but the bar itself. */
#define TEXT_COLUMNS 52

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void mmk_format_size(char *buf, size_t cap, uint64_t v)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double d = (double)v;
    size_t u = 0;
    while (d >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu B", (unsigned long long)v);
    else
        snprintf(buf, cap, "%.*f %s", d < 10 ? 2 : d < 100 ? 1 : 0, d, units[u]);
}

void mmk_progress_init(mmk_progress *p, const char *label, bool enabled)
{
    p->enabled = enabled && isatty(STDERR_FILENO);
    p->drawn = false;
    p->label = label;
    p->start = now_s();
}

void mmk_progress_update(void *arg, uint64_t done, uint64_t total)
{
    mmk_progress *p = arg;
    if (!p->enabled)
        return;
    double t = now_s() - p->start;
    if (t < PROGRESS_DELAY || total == 0)
        return;
    struct winsize ws;
    int cols = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col ? ws.ws_col
                                                                        : DEFAULT_COLUMNS;
    int width = cols - TEXT_COLUMNS;
    if (width > 40)
        width = 40;
    double frac = done >= total ? 1.0 : (double)done / (double)total;
    char a[32], b[32], eta[32] = "";
    mmk_format_size(a, sizeof a, done);
    mmk_format_size(b, sizeof b, total);
    double rate = t > 0 ? (double)done / t : 0;
    if (rate > 0 && done < total) {
        unsigned long s = (unsigned long)((double)(total - done) / rate + 0.5);
        snprintf(eta, sizeof eta, " ETA %lu:%02lu", s / 60, s % 60);
    }
    fprintf(stderr, "\r%s ", p->label);
    if (width >= 10) {
        int fill = (int)(frac * width);
        fputc('[', stderr);
        for (int i = 0; i < width; i++)
            fputc(i < fill ? '#' : '.', stderr);
        fputs("] ", stderr);
    }
    fprintf(stderr, "%3.0f%% %s / %s  %.0f MB/s%s\033[K", frac * 100, a, b, rate / 1e6, eta);
    fflush(stderr);
    p->drawn = true;
}

void mmk_progress_done(mmk_progress *p)
{
    if (p->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drawn = false;
    }
}
