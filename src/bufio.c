/* src/bufio.c — buffered reader/writer over rings (being written). */
#include <mmkit/bufio.h>
