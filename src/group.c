/* src/group.c — many files as one byte array (being written). */
#include <mmkit/group.h>
