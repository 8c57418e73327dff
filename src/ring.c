/* src/ring.c — mirrored ring buffers (being written). */
#include <mmkit/ring.h>
