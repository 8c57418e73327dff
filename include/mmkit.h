/* mmkit.h — memory-mapped file I/O without the sharp edges.
 * Includes every public mmkit header; see mmkit(3). */
#ifndef MMKIT_H
#define MMKIT_H

#include <mmkit/common.h>
#include <mmkit/map.h>
#include <mmkit/guard.h>
#include <mmkit/cache.h>
#include <mmkit/file.h>
#include <mmkit/fs.h>
#include <mmkit/group.h>
#include <mmkit/ring.h>
#include <mmkit/bufio.h>

#endif /* MMKIT_H */
