/* mmkit/ring.h (being written) */
#ifndef MMKIT_RING_H
#define MMKIT_RING_H
#include <mmkit/common.h>
#endif
