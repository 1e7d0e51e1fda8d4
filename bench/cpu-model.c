/* The CPU's model name (cpu-model.h). */
#include "cpu-model.h"

#include <stdio.h>
#include <string.h>

void mha_bench_cpu_model(char* buf, size_t len) {
  snprintf(buf, len, "unknown CPU");
  FILE* f = fopen("/proc/cpuinfo", "r");
  if (f == NULL) return;
  char line[512];
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "model name", 10) == 0) {
      const char* v = strchr(line, ':');
      if (v != NULL) {
        snprintf(buf, len, "%s", v + 2);
        buf[strcspn(buf, "\n")] = '\0';
      }
      break;
    }
  }
  fclose(f);
}
