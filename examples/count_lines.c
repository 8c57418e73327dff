/* examples/count_lines.c — count the lines of a file through a read-only map.
 *
 *   count_lines FILE
 */
#include <stdio.h>
#include <string.h>

#include <mmkit.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FILE\n", argv[0]);
        return 2;
    }
    mmk_map *m;
    int rc = mmk_map_open(&m, argv[1], &(mmk_map_opts){ .flags = MMK_RDONLY });
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], mmk_strerror(rc));
        return 1;
    }
    /* The whole file, as one array: no read loop, no buffer. */
    mmk_map_advise(m, 0, 0, MMK_ADV_SEQUENTIAL);
    const char *p = mmk_map_ptr(m), *end = p + mmk_map_len(m);
    size_t lines = 0;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        lines++;
        p++;
    }
    printf("%zu %s\n", lines, argv[1]);
    return mmk_map_close(m) < 0;
}
