/* Buffers followed by a PROT_NONE page. */
#include "guarded-buffer.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

guarded_buffer guarded_alloc(size_t n) {
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  const size_t bytes = n * sizeof(float);
  const size_t data_pages = (bytes + page - 1) / page;
  guarded_buffer b;
  b.map_size = (data_pages + 1) * page;
  b.map = mmap(NULL, b.map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (b.map == MAP_FAILED) {
    fprintf(stderr, "guarded_alloc: mmap of %zu bytes failed\n", b.map_size);
    exit(2);
  }
  char* guard = (char*)b.map + data_pages * page;
  if (mprotect(guard, page, PROT_NONE) != 0) {
    fprintf(stderr, "guarded_alloc: mprotect failed\n");
    exit(2);
  }
  b.data = (float*)(guard - bytes);
  return b;
}

void guarded_free(guarded_buffer* b) {
  munmap(b->map, b->map_size);
  b->data = NULL;
  b->map = NULL;
}
