/*
 * Buffers that end exactly at an inaccessible page, so that reading one
 * element past the end faults in any build (ASan is not needed). For the
 * micro-kernel tests, whose contracts forbid reading past the operands.
 */
#ifndef MHA_TESTS_GUARDED_BUFFER_H
#define MHA_TESTS_GUARDED_BUFFER_H

#include <stddef.h>

typedef struct guarded_buffer {
  float* data;     /* n floats; data + n is the first byte of a PROT_NONE page */
  void* map;       /* the mapping, for guarded_free */
  size_t map_size;
} guarded_buffer;

/* Exits the test with a message when the mapping fails. */
guarded_buffer guarded_alloc(size_t n);
void guarded_free(guarded_buffer* b);

#endif
