/* examples/write_sync.c — create a file of N bytes, fill it through a shared
 * read-write map, and make it durable.
 *
 *   write_sync FILE BYTES
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mmkit.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s FILE BYTES\n", argv[0]);
        return 2;
    }
    size_t n = strtoull(argv[2], NULL, 0);
    mmk_map *m;
    /* Creates the file (mode 0644 minus umask) and grows it to n bytes. */
    int rc = mmk_map_open(&m, argv[1], &(mmk_map_opts){
        .flags = MMK_RDWR | MMK_CREATE, .len = n });
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], mmk_strerror(rc));
        return 1;
    }
    unsigned char *p = mmk_map_ptr(m);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)('a' + i % 26);
    /* Returns only once the bytes (and the new file's size and name) are on
     * stable storage. */
    if ((rc = mmk_map_sync(m, 0, 0)) < 0)
        fprintf(stderr, "sync: %s\n", mmk_strerror(rc));
    mmk_map_close(m);
    return rc < 0;
}
