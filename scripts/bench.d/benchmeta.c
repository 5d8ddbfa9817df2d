// benchmeta: the metadata workloads of scripts/bench, in C so that process
// start-up and shell overhead do not dominate per-file timings.
//
//   benchmeta files ROOT NDIRS NFILES PHASE...   PHASE: create stat drop statcold readdir unlink
//                                                (statcold = stat, named apart for after drop)
//   benchmeta par ROOT NPROCS NFILES             NPROCS processes, each in ROOT/pI:
//                                                create, stat, unlink NFILES files
//   benchmeta storm LISTFILE PREFIX PASSES       stat PREFIX/<line> for every line, PASSES times
//
// Every timed phase prints "NAME SECONDS" on stdout. Any failed syscall is
// fatal (exit 1) so a broken filesystem cannot produce a fast-looking number.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char* what, const char* path) {
  fprintf(stderr, "benchmeta: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

static void drop_caches(void) {
  sync();
  int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
  if (fd < 0 || write(fd, "3\n", 2) != 2) die("drop_caches", "");
  close(fd);
}

static void file_path(char* buf, size_t n, const char* root, int d, int f) {
  snprintf(buf, n, "%s/d%03d/f%06d", root, d, f);
}

static void create_files(const char* root, int ndirs, int nfiles) {
  char p[4096];
  for (int d = 0; d < ndirs; d++) {
    snprintf(p, sizeof p, "%s/d%03d", root, d);
    if (mkdir(p, 0755) != 0) die("mkdir", p);
  }
  for (int d = 0; d < ndirs; d++)
    for (int f = 0; f < nfiles; f++) {
      file_path(p, sizeof p, root, d, f);
      int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
      if (fd < 0) die("create", p);
      close(fd);
    }
}

static void stat_files(const char* root, int ndirs, int nfiles) {
  char p[4096];
  struct stat st;
  for (int d = 0; d < ndirs; d++)
    for (int f = 0; f < nfiles; f++) {
      file_path(p, sizeof p, root, d, f);
      if (stat(p, &st) != 0) die("stat", p);
    }
}

// What `ls -f` does: open, read every entry, no sorting, no stat.
static void readdir_files(const char* root, int ndirs, int nfiles) {
  char p[4096];
  for (int d = 0; d < ndirs; d++) {
    snprintf(p, sizeof p, "%s/d%03d", root, d);
    DIR* dir = opendir(p);
    if (!dir) die("opendir", p);
    int n = 0;
    while (readdir(dir)) n++;
    closedir(dir);
    if (n != nfiles + 2) {
      fprintf(stderr, "benchmeta: %s lists %d entries, expected %d\n", p, n, nfiles + 2);
      exit(1);
    }
  }
}

static void unlink_files(const char* root, int ndirs, int nfiles) {
  char p[4096];
  for (int d = 0; d < ndirs; d++)
    for (int f = 0; f < nfiles; f++) {
      file_path(p, sizeof p, root, d, f);
      if (unlink(p) != 0) die("unlink", p);
    }
}

static int cmd_files(int argc, char** argv) {
  if (argc < 4) return 2;
  const char* root = argv[0];
  int ndirs = atoi(argv[1]), nfiles = atoi(argv[2]);
  if (mkdir(root, 0755) != 0 && errno != EEXIST) die("mkdir", root);
  for (int i = 3; i < argc; i++) {
    const char* ph = argv[i];
    if (!strcmp(ph, "drop")) { drop_caches(); continue; }
    double t0 = now();
    if (!strcmp(ph, "create")) create_files(root, ndirs, nfiles);
    else if (!strcmp(ph, "stat") || !strcmp(ph, "statcold")) stat_files(root, ndirs, nfiles);
    else if (!strcmp(ph, "readdir")) readdir_files(root, ndirs, nfiles);
    else if (!strcmp(ph, "unlink")) unlink_files(root, ndirs, nfiles);
    else { fprintf(stderr, "benchmeta: unknown phase %s\n", ph); return 2; }
    printf("%s %.6f\n", ph, now() - t0);
    fflush(stdout);
  }
  return 0;
}

static int cmd_par(int argc, char** argv) {
  if (argc != 3) return 2;
  const char* root = argv[0];
  int nprocs = atoi(argv[1]), nfiles = atoi(argv[2]);
  if (mkdir(root, 0755) != 0 && errno != EEXIST) die("mkdir", root);
  // Children wait on a pipe so that all of them start together and the
  // timing does not include fork().
  int go[2];
  if (pipe(go) != 0) die("pipe", "");
  for (int i = 0; i < nprocs; i++) {
    pid_t pid = fork();
    if (pid < 0) die("fork", "");
    if (pid == 0) {
      close(go[1]);
      char c;
      if (read(go[0], &c, 1) < 0) die("read", "pipe");
      char dir[4096];
      snprintf(dir, sizeof dir, "%s/p%d", root, i);
      if (mkdir(dir, 0755) != 0) die("mkdir", dir);
      create_files(dir, 1, nfiles);
      stat_files(dir, 1, nfiles);
      unlink_files(dir, 1, nfiles);
      _exit(0);
    }
  }
  close(go[0]);
  double t0 = now();
  close(go[1]);  // EOF releases every child at once
  int failed = 0, status;
  while (wait(&status) > 0)
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
  if (failed) { fprintf(stderr, "benchmeta: a par child failed\n"); return 1; }
  printf("par %.6f\n", now() - t0);
  return 0;
}

static int cmd_storm(int argc, char** argv) {
  if (argc != 3) return 2;
  FILE* list = fopen(argv[0], "r");
  if (!list) die("open", argv[0]);
  size_t cap = 1024, n = 0;
  char** paths = malloc(cap * sizeof *paths);
  char line[4096];
  while (fgets(line, sizeof line, list)) {
    line[strcspn(line, "\n")] = 0;
    if (n == cap) paths = realloc(paths, (cap *= 2) * sizeof *paths);
    if (asprintf(&paths[n++], "%s/%s", argv[1], line) < 0) die("asprintf", "");
  }
  fclose(list);
  int passes = atoi(argv[2]);
  struct stat st;
  double t0 = now();
  for (int p = 0; p < passes; p++)
    for (size_t i = 0; i < n; i++)
      if (lstat(paths[i], &st) != 0) die("lstat", paths[i]);
  printf("storm %.6f\n", now() - t0);
  return 0;
}

int main(int argc, char** argv) {
  int rc = 2;
  if (argc >= 2 && !strcmp(argv[1], "files")) rc = cmd_files(argc - 2, argv + 2);
  else if (argc >= 2 && !strcmp(argv[1], "par")) rc = cmd_par(argc - 2, argv + 2);
  else if (argc >= 2 && !strcmp(argv[1], "storm")) rc = cmd_storm(argc - 2, argv + 2);
  if (rc == 2) fprintf(stderr, "usage: see the comment at the top of benchmeta.c\n");
  return rc;
}
