/* Status strings and the thread-local last-error message. */
#include <stdarg.h>
#include <stdio.h>

#include "mha/internal.h"

uint32_t mha_version(void) {
  return MHA_VERSION_MAJOR * 10000u + MHA_VERSION_MINOR * 100u + MHA_VERSION_PATCH;
}

static _Thread_local char mha_last_error_buf[512];

const char* mha_status_string(mha_status status) {
  switch (status) {
    case MHA_STATUS_SUCCESS: return "success";
    case MHA_STATUS_NULL_POINTER: return "null pointer";
    case MHA_STATUS_INVALID_SIZE: return "invalid size";
    case MHA_STATUS_INVALID_SHAPE: return "invalid shape";
    case MHA_STATUS_INVALID_STRIDE: return "invalid stride";
    case MHA_STATUS_INVALID_ARGUMENT: return "invalid argument";
    case MHA_STATUS_SIZE_OVERFLOW: return "size overflow";
    case MHA_STATUS_OUT_OF_MEMORY: return "out of memory";
    case MHA_STATUS_UNKNOWN_ISA: return "unknown ISA";
    case MHA_STATUS_UNSUPPORTED_ISA: return "unsupported ISA";
    case MHA_STATUS_COMMUNICATION: return "communication failed";
  }
  return "unknown status";
}

const char* mha_last_error(void) { return mha_last_error_buf; }

void mha_error_clear(void) { mha_last_error_buf[0] = '\0'; }

mha_status mha_error(mha_status status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(mha_last_error_buf, sizeof mha_last_error_buf, fmt, ap);
  va_end(ap);
  return status;
}
