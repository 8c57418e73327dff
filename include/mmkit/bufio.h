/* mmkit/bufio.h (being written) */
#ifndef MMKIT_BUFIO_H
#define MMKIT_BUFIO_H
#include <mmkit/ring.h>
#endif
