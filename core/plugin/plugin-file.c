/* zltk — checks on a plugin file before the loader maps it: its ELF headers,
 * its dynamic symbols, and a probe load in a separate process.
 *
 * dlopen() trusts the file: it mmap()s every loadable segment as the
 * program headers describe it, and touching a mapped page past the end of
 * a truncated file raises SIGBUS inside the loader.  So the headers are
 * read here with pread() (never mmap) and every range they name is checked
 * against the file's size first.  The probe runs the file's constructors in
 * a child process, as GStreamer's gst-plugin-scanner does, so that code
 * which aborts, crashes or exits takes down the child, not the host.
 */
#define G_LOG_DOMAIN "zltk-plugin"
#include "plugin-internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------ messages */

static int refuse(char **error, int rc, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
static int refuse(char **error, int rc, const char *fmt, ...)
{
    va_list ap;

    if (error) {
        va_start(ap, fmt);
        if (vasprintf(error, fmt, ap) < 0)
            *error = NULL;
        va_end(ap);
    }
    return rc;
}

/* ------------------------------------------------------------ ELF */

/* Whole-range read at an offset; 0, or -1 with errno (0 = short file). */
static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;

    while (len) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = 0;
            return -1;
        }
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Whether [off, off + len) lies inside a file of size bytes. */
static bool in_file(uint64_t off, uint64_t len, uint64_t size)
{
    return off <= size && len <= size - off;
}

/* The class, byte order and machine this process runs: those of libzltk's
 * own ELF header, mapped at the base of its first segment. */
static void host_elf(unsigned char *cls, unsigned char *data, uint16_t *mach)
{
    Dl_info di;
    const ElfW(Ehdr) *self = NULL;

    if (dladdr((void *)(uintptr_t)host_elf, &di) && di.dli_fbase)
        self = di.dli_fbase;
    if (self && !memcmp(self->e_ident, ELFMAG, SELFMAG)) {
        *cls = self->e_ident[EI_CLASS];
        *data = self->e_ident[EI_DATA];
        *mach = self->e_machine;
        return;
    }
    *cls = sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32;
    *data = G_BYTE_ORDER == G_LITTLE_ENDIAN ? ELFDATA2LSB : ELFDATA2MSB;
    *mach = EM_NONE; /* unknown: not compared */
}

static const char *machine_name(unsigned m, char *buf, size_t len)
{
    static const struct {
        unsigned m;
        const char *name;
    } names[] = {
        {EM_386, "i386"},       {EM_X86_64, "x86-64"},
        {EM_ARM, "ARM"},        {EM_AARCH64, "AArch64"},
        {EM_PPC, "PowerPC"},    {EM_PPC64, "PowerPC64"},
        {EM_S390, "s390"},      {EM_MIPS, "MIPS"},
        {EM_SPARCV9, "SPARC64"}, {EM_RISCV, "RISC-V"},
    };

    for (size_t i = 0; i < ZL__ARRAY_SIZE(names); i++)
        if (names[i].m == m)
            return names[i].name;
    snprintf(buf, len, "machine %u", m);
    return buf;
}

/* Program headers: every segment's bytes in the file, one PT_LOAD at least. */
static int check_segments(int fd, const char *path, const ElfW(Ehdr) *eh,
                          uint64_t size, char **error)
{
    ElfW(Phdr) *ph;
    size_t n = eh->e_phnum, loads = 0;
    int rc = 0;

    if (!(ph = calloc(n, sizeof(*ph))))
        return refuse(error, -ENOMEM, "%s: out of memory", path);
    if (read_at(fd, ph, n * sizeof(*ph), eh->e_phoff) < 0) {
        rc = refuse(error, -ENOEXEC, "%s: cannot read its program headers: %s",
                    path, errno ? g_strerror(errno) : "file too short");
        goto out;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        if (ph[i].p_type == PT_LOAD) {
            loads++;
            if (ph[i].p_filesz > ph[i].p_memsz)
                rc = refuse(error, -ENOEXEC,
                            "%s: damaged: loadable segment %zu has more bytes "
                            "in the file (%" G_GUINT64_FORMAT ") than in "
                            "memory (%" G_GUINT64_FORMAT "); reinstall or "
                            "rebuild it",
                            path, i, (guint64)ph[i].p_filesz,
                            (guint64)ph[i].p_memsz);
        }
        if (!rc && ph[i].p_filesz &&
            !in_file(ph[i].p_offset, ph[i].p_filesz, size))
            rc = refuse(error, -ENOEXEC,
                        "%s: truncated: %s segment %zu spans bytes "
                        "%" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT
                        " but the file has only %" G_GUINT64_FORMAT
                        " bytes (a copy or install that stopped half-way?); "
                        "reinstall or rebuild it",
                        path, ph[i].p_type == PT_LOAD ? "loadable" : "a",
                        i, (guint64)ph[i].p_offset,
                        (guint64)ph[i].p_offset + (guint64)ph[i].p_filesz,
                        (guint64)size);
    }
    if (!rc && !loads)
        rc = refuse(error, -ENOEXEC,
                    "%s: damaged: no loadable segment; rebuild it", path);
out:
    free(ph);
    return rc;
}

/* The section header table, if there is one, lies inside the file; *count
 * gets its number of entries (e_shnum, or section 0's size when that
 * overflows, as the ELF spec extends it). */
static int check_sections(int fd, const char *path, const ElfW(Ehdr) *eh,
                          uint64_t size, size_t *count, char **error)
{
    ElfW(Shdr) first;
    uint64_t n = eh->e_shnum;

    *count = 0;
    if (!eh->e_shoff)
        return 0; /* stripped of its section headers: dlopen needs none */
    if (eh->e_shentsize != sizeof(ElfW(Shdr)))
        return refuse(error, -ENOEXEC,
                      "%s: damaged: section headers of %u bytes, expected "
                      "%zu; rebuild it",
                      path, eh->e_shentsize, sizeof(ElfW(Shdr)));
    if (!in_file(eh->e_shoff, sizeof(first), size))
        goto truncated;
    if (!n) {
        if (read_at(fd, &first, sizeof(first), eh->e_shoff) < 0)
            goto truncated;
        n = first.sh_size;
    }
    if (n > size / sizeof(ElfW(Shdr)) ||
        !in_file(eh->e_shoff, n * sizeof(ElfW(Shdr)), size))
        goto truncated;
    *count = (size_t)n;
    return 0;
truncated:
    return refuse(error, -ENOEXEC,
                  "%s: truncated: its section header table (at byte "
                  "%" G_GUINT64_FORMAT ") ends past the end of the file "
                  "(%" G_GUINT64_FORMAT " bytes; a copy or install that "
                  "stopped half-way?); reinstall or rebuild it",
                  path, (guint64)eh->e_shoff, (guint64)size);
}

/* Opens path and checks it; on success *fd_out and *eh are set. */
static int elf_open(const char *path, int *fd_out, ElfW(Ehdr) *eh,
                    uint64_t *size_out, size_t *nsect, char **error)
{
    unsigned char cls, data;
    uint16_t mach;
    char mbuf[2][32];
    struct stat st;
    uint64_t size;
    int fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return refuse(error, -errno, "%s: cannot open it: %s", path,
                      g_strerror(errno));
    if (fstat(fd, &st) < 0) {
        rc = refuse(error, -errno, "%s: %s", path, g_strerror(errno));
        goto fail;
    }
    size = (uint64_t)st.st_size;
    memset(eh, 0, sizeof(*eh));
    if (size < SELFMAG || read_at(fd, eh->e_ident, SELFMAG, 0) < 0 ||
        memcmp(eh->e_ident, ELFMAG, SELFMAG)) {
        rc = refuse(error, -ENOEXEC,
                    "%s: not a shared object (no ELF header); is it a zltk "
                    "plugin built for this system?",
                    path);
        goto fail;
    }
    if (size < sizeof(*eh) || read_at(fd, eh, sizeof(*eh), 0) < 0) {
        rc = refuse(error, -ENOEXEC,
                    "%s: truncated: %" G_GUINT64_FORMAT " bytes, shorter "
                    "than its ELF header; reinstall or rebuild it",
                    path, size);
        goto fail;
    }
    host_elf(&cls, &data, &mach);
    if (eh->e_ident[EI_CLASS] != cls || eh->e_ident[EI_DATA] != data ||
        eh->e_ident[EI_VERSION] != EV_CURRENT) {
        rc = refuse(error, -ENOEXEC,
                    "%s: built for another system: ELF %s %s, this host is "
                    "%s %s; rebuild it here",
                    path,
                    eh->e_ident[EI_CLASS] == ELFCLASS64   ? "64-bit"
                    : eh->e_ident[EI_CLASS] == ELFCLASS32 ? "32-bit"
                                                          : "(bad class)",
                    eh->e_ident[EI_DATA] == ELFDATA2LSB   ? "little-endian"
                    : eh->e_ident[EI_DATA] == ELFDATA2MSB ? "big-endian"
                                                          : "(bad byte order)",
                    cls == ELFCLASS64 ? "64-bit" : "32-bit",
                    data == ELFDATA2LSB ? "little-endian" : "big-endian");
        goto fail;
    }
    if (eh->e_type != ET_DYN) {
        rc = refuse(error, -ENOEXEC,
                    "%s: not a shared object (ELF %s); build plugins as "
                    "shared modules (libtool -module, or cc -shared -fPIC)",
                    path,
                    eh->e_type == ET_EXEC  ? "executable"
                    : eh->e_type == ET_REL ? "relocatable object"
                    : eh->e_type == ET_CORE ? "core dump"
                                            : "file of unknown type");
        goto fail;
    }
    if (mach != EM_NONE && eh->e_machine != mach) {
        rc = refuse(error, -ENOEXEC,
                    "%s: built for %s, but this host is %s; rebuild it here",
                    path, machine_name(eh->e_machine, mbuf[0], sizeof(mbuf[0])),
                    machine_name(mach, mbuf[1], sizeof(mbuf[1])));
        goto fail;
    }
    if (eh->e_phentsize != sizeof(ElfW(Phdr)) || !eh->e_phnum ||
        eh->e_phnum == PN_XNUM) {
        rc = refuse(error, -ENOEXEC,
                    "%s: damaged: %u program headers of %u bytes; rebuild it",
                    path, eh->e_phnum, eh->e_phentsize);
        goto fail;
    }
    if (!in_file(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(ElfW(Phdr)),
                 size)) {
        rc = refuse(error, -ENOEXEC,
                    "%s: truncated: its program headers end past the end of "
                    "the file (%" G_GUINT64_FORMAT " bytes); reinstall or "
                    "rebuild it",
                    path, size);
        goto fail;
    }
    if ((rc = check_segments(fd, path, eh, size, error)) < 0 ||
        (rc = check_sections(fd, path, eh, size, nsect, error)) < 0)
        goto fail;
    *fd_out = fd;
    *size_out = size;
    return 0;
fail:
    close(fd);
    return rc;
}

int zl__plugin_file_check(const char *path, char **error)
{
    ElfW(Ehdr) eh;
    uint64_t size;
    size_t nsect;
    int fd, rc;

    if (error)
        *error = NULL;
    rc = elf_open(path, &fd, &eh, &size, &nsect, error);
    if (rc == 0)
        close(fd);
    return rc;
}

/* In a section table of n entries, the first one of type, or NULL. */
static const ElfW(Shdr) *find_section(const ElfW(Shdr) *sh, size_t n,
                                      uint32_t type)
{
    for (size_t i = 0; i < n; i++)
        if (sh[i].sh_type == type)
            return &sh[i];
    return NULL;
}

/* Read a whole section, bounded (a symbol table of a plugin is small). */
static void *read_section(int fd, const ElfW(Shdr) *s, uint64_t size)
{
    void *buf;

    if (!s || !s->sh_size || s->sh_size > (64u << 20) ||
        !in_file(s->sh_offset, s->sh_size, size))
        return NULL;
    buf = malloc((size_t)s->sh_size + 1);
    if (buf && read_at(fd, buf, (size_t)s->sh_size, s->sh_offset) < 0) {
        free(buf);
        return NULL;
    }
    if (buf)
        ((char *)buf)[s->sh_size] = '\0'; /* the last string ends */
    return buf;
}

char *zl__plugin_file_similar_symbol(const char *path, const char *name)
{
    ElfW(Shdr) *sh = NULL;
    const ElfW(Shdr) *dynsym;
    ElfW(Sym) *syms = NULL;
    char *strs = NULL, *found = NULL;
    ElfW(Ehdr) eh;
    uint64_t size;
    size_t nsect;
    int fd;

    if (elf_open(path, &fd, &eh, &size, &nsect, NULL) < 0)
        return NULL;
    if (!nsect || nsect > 65536 || !(sh = calloc(nsect, sizeof(*sh))) ||
        read_at(fd, sh, nsect * sizeof(*sh), eh.e_shoff) < 0)
        goto out;
    dynsym = find_section(sh, nsect, SHT_DYNSYM);
    if (!dynsym || dynsym->sh_entsize != sizeof(ElfW(Sym)) ||
        dynsym->sh_link >= nsect)
        goto out;
    syms = read_section(fd, dynsym, size);
    strs = read_section(fd, &sh[dynsym->sh_link], size);
    if (!syms || !strs)
        goto out;
    for (size_t i = 0; i < dynsym->sh_size / sizeof(ElfW(Sym)); i++) {
        const char *s;

        if (syms[i].st_shndx == SHN_UNDEF ||
            syms[i].st_name >= sh[dynsym->sh_link].sh_size)
            continue;
        s = strs + syms[i].st_name;
        if (strstr(s, name) && strcmp(s, name)) {
            found = strdup(s);
            break;
        }
    }
out:
    free(syms);
    free(strs);
    free(sh);
    close(fd);
    return found;
}

/* ------------------------------------------------------------ the probe */

/* What the probe child writes on fd 3, one word a line, as it goes: the
 * last word the parent read tells where the child died. */
#define PROBE_FD 3

static void say(int fd, const char *word)
{
    size_t len = fd < 0 ? 0 : strlen(word);

    while (len) {
        ssize_t w = write(fd, word, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        word += w;
        len -= (size_t)w;
    }
}

int zl_plugins_probe_child(const char *path, int status_fd)
{
    zl_plugin_entry_fn entry;
    void *h;

    char *anchored;

    struct stat st;

    if (!path)
        return 2;
    if (status_fd < 0)
        status_fd = PROBE_FD;
    /* Run by hand, fd 3 may be anything: only a pipe is the parent's. */
    if (fstat(status_fd, &st) < 0 || !S_ISFIFO(st.st_mode))
        status_fd = -1;
    /* As the loader does: a name without '/' is a file here, not a library
     * to look up. */
    anchored = strchr(path, '/') ? NULL : g_strconcat("./", path, NULL);
    /* The parent refuses, with its own message, whatever fails to load
     * here without a crash: only a crash is news. */
    say(status_fd, "dlopen\n");
    h = dlopen(anchored ? anchored : path, RTLD_NOW | RTLD_LOCAL);
    if (h) {
        say(status_fd, "entry\n");
        entry = (zl_plugin_entry_fn)(uintptr_t)dlsym(h,
                                                     ZLTK_PLUGIN_ENTRY_SYMBOL);
        if (entry)
            (void)entry();
    }
    say(status_fd, "ok\n");
    /* Not exit(): the plugin's destructors stay out of this too. */
    _exit(0);
}

typedef struct probe_io {
    int fd;
    char tail[512]; /* the last bytes read */
    size_t len;
    bool open;
} probe_io_t;

static void io_read(probe_io_t *io)
{
    char buf[4096];
    ssize_t r;

    for (;;) {
        r = read(io->fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        if (r <= 0) {
            io->open = false;
            return;
        }
        if ((size_t)r >= sizeof(io->tail)) {
            memcpy(io->tail, buf + r - sizeof(io->tail), sizeof(io->tail));
            io->len = sizeof(io->tail);
        } else {
            size_t keep = MIN(io->len, sizeof(io->tail) - (size_t)r);
            memmove(io->tail, io->tail + io->len - keep, keep);
            memcpy(io->tail + keep, buf, (size_t)r);
            io->len = keep + (size_t)r;
        }
    }
}

/* The last non-empty line of io, printable, bounded (g_free it), or NULL. */
static char *io_last_line(const probe_io_t *io)
{
    size_t end = io->len, start;
    char *line;

    while (end && (io->tail[end - 1] == '\n' || io->tail[end - 1] == '\r'))
        end--;
    for (start = end; start && io->tail[start - 1] != '\n'; start--)
        ;
    if (start == end)
        return NULL;
    if (end - start > 200)
        start = end - 200;
    line = g_strndup(io->tail + start, end - start);
    for (char *c = line; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    return line;
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGTRAP: return "SIGTRAP";
    case SIGSYS: return "SIGSYS";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
    }
}

/* A pipe whose ends are both above PROBE_FD (so dup2 onto 2 and 3 in the
 * child never meets an end in place) and close-on-exec. */
static int probe_pipe(int p[2])
{
    if (pipe(p) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        int fd = fcntl(p[i], F_DUPFD_CLOEXEC, PROBE_FD + 1);
        if (fd < 0) {
            int e = errno;
            close(p[0]);
            close(p[1]);
            return -e;
        }
        close(p[i]);
        p[i] = fd;
    }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    return 0;
}

/* Start argv... path with stderr on err_w and fd 3 on st_w. */
static int probe_spawn(const char *const *argv, const char *path, int err_w,
                       int st_w, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dfl;
    GPtrArray *args = g_ptr_array_new();
    int rc;

    for (size_t i = 0; argv[i]; i++)
        g_ptr_array_add(args, (char *)argv[i]);
    g_ptr_array_add(args, (char *)path);
    g_ptr_array_add(args, NULL);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY,
                                     0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null",
                                     O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, err_w, STDERR_FILENO);
    posix_spawn_file_actions_adddup2(&fa, st_w, PROBE_FD);
    /* Not the host's blocked signals or ignored SIGPIPE: a plain process. */
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGHUP);
    sigaddset(&dfl, SIGUSR1);
    sigaddset(&dfl, SIGCHLD);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawn(pid, argv[0], &fa, &at, (char *const *)args->pdata,
                     environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    g_ptr_array_free(args, TRUE);
    return -rc;
}

/* Read both pipes until the child is reaped or the deadline passes (then
 * kill it).  *status gets waitpid's status, *reaped whether it came. */
static bool probe_wait(pid_t pid, probe_io_t *io, unsigned timeout_ms,
                       int *status)
{
    uint64_t deadline = zl_now_ms() + timeout_ms;
    bool timed_out = false;

    for (;;) {
        struct pollfd pf[2];
        nfds_t n = 0;
        uint64_t now = zl_now_ms();
        pid_t w;

        for (int i = 0; i < 2; i++)
            if (io[i].open)
                pf[n++] = (struct pollfd){.fd = io[i].fd, .events = POLLIN};
        /* A short tick: a grandchild may hold the pipes open after the
         * child itself has gone. */
        poll(pf, n, (int)MIN(deadline > now ? deadline - now : 0, 50));
        for (int i = 0; i < 2; i++)
            if (io[i].open)
                io_read(&io[i]);
        w = waitpid(pid, status, WNOHANG);
        if (w == pid || (w < 0 && errno != EINTR))
            break;
        if (zl_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, status, 0) < 0 && errno == EINTR)
                ;
            timed_out = true;
            break;
        }
    }
    for (int i = 0; i < 2; i++)
        if (io[i].open)
            io_read(&io[i]);
    return timed_out;
}

int zl__plugin_probe(const char *const *argv, unsigned timeout_ms,
                     const char *path, char **error)
{
    probe_io_t io[2] = {{.fd = -1}, {.fd = -1}}; /* stderr, status */
    int errp[2] = {-1, -1}, stp[2] = {-1, -1}, status = 0, rc;
    char *said = NULL, *quote = NULL;
    const char *where;
    bool timed_out;
    pid_t pid;

    if ((rc = probe_pipe(errp)) < 0 || (rc = probe_pipe(stp)) < 0) {
        if (errp[0] >= 0) {
            close(errp[0]);
            close(errp[1]);
        }
        return refuse(error, rc, "%s: cannot probe it: no pipe: %s", path,
                      zl_strerror(rc));
    }
    rc = probe_spawn(argv, path, errp[1], stp[1], &pid);
    close(errp[1]);
    close(stp[1]);
    io[0] = (probe_io_t){.fd = errp[0], .open = true};
    io[1] = (probe_io_t){.fd = stp[0], .open = true};
    if (rc < 0) {
        rc = refuse(error, rc, "%s: cannot probe it: cannot run %s: %s", path,
                    argv[0], zl_strerror(rc));
        goto out;
    }
    timed_out = probe_wait(pid, io, timeout_ms, &status);
    said = io_last_line(&io[1]);
    if (!timed_out && said && !strcmp(said, "ok") && WIFEXITED(status) &&
        WEXITSTATUS(status) == 0) {
        rc = 0;
        goto out;
    }
    quote = io_last_line(&io[0]);
    where = !said                  ? "before it was opened"
            : !strcmp(said, "entry") ? "in zltk_plugin_entry()"
            : !strcmp(said, "ok")  ? "after loading (in a destructor?)"
                                   : "in its constructors (during dlopen)";
    if (!said && !timed_out)
        /* The probe program itself failed: not the plugin's doing. */
        rc = refuse(error, -ENOEXEC,
                    "%s: cannot probe it: %s ended (%s %d) before it "
                    "reported anything%s%s%s; does it call "
                    "zl_plugins_probe_child()?",
                    path, argv[0],
                    WIFSIGNALED(status) ? "signal" : "exit status",
                    WIFSIGNALED(status) ? WTERMSIG(status)
                                        : WEXITSTATUS(status),
                    quote ? ", last output: \"" : "", quote ? quote : "",
                    quote ? "\"" : "");
    else if (timed_out)
        rc = refuse(error, -ENOEXEC,
                    "%s: refused: it did not finish loading within %u ms in "
                    "a probe process: it hangs %s; fix the plugin or take it "
                    "off the plugin path",
                    path, timeout_ms, where);
    else if (WIFSIGNALED(status))
        rc = refuse(error, -ENOEXEC,
                    "%s: refused: it crashed with %s (%s) %s, in a probe "
                    "process%s%s%s; fix the plugin or take it off the plugin "
                    "path",
                    path, signal_name(WTERMSIG(status)),
                    strsignal(WTERMSIG(status)), where,
                    quote ? ", last output: \"" : "", quote ? quote : "",
                    quote ? "\"" : "");
    else
        rc = refuse(error, -ENOEXEC,
                    "%s: refused: it called exit(%d) %s, in a probe "
                    "process%s%s%s; a plugin must never end the host: fix it "
                    "or take it off the plugin path",
                    path, WIFEXITED(status) ? WEXITSTATUS(status) : -1, where,
                    quote ? ", last output: \"" : "", quote ? quote : "",
                    quote ? "\"" : "");
out:
    g_free(said);
    g_free(quote);
    close(io[0].fd);
    close(io[1].fd);
    return rc;
}
