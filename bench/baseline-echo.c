/* bench/baseline-echo — the yardstick: a plain single-threaded epoll echo
 * server, two system calls per echoed message in steady state (read, write),
 * about 12 bytes of state per idle connection.
 *
 *   baseline-echo --port PORT [--host ADDR]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, lfd, ep, one = 1;
    struct sockaddr_in sa = {0};
    struct epoll_event ev, evs[256];
    static char buf[128 * 1024];
    struct rlimit rl;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc)
            host = argv[++i];
        else {
            fprintf(stderr, "usage: %s --port PORT [--host ADDR]\n", argv[0]);
            return 2;
        }
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGINT, on_sig);
    signal(SIGTERM, on_sig);
    signal(SIGPIPE, SIG_IGN);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "baseline-echo: bad host %s\n", host);
        return 2;
    }
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4096) < 0) {
        perror("baseline-echo: listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    printf("baseline-echo: listening on %s:%d\n", host, port);
    fflush(stdout);
    while (!stop) {
        int n = epoll_wait(ep, evs, 256, 500);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
                    ev.events = EPOLLIN;
                    ev.data.fd = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                close(fd);
                continue;
            }
            /* Blocking-style write of the echo: the peer in the bench always
             * reads, and a short write is finished with a poll-free retry. */
            ssize_t off = 0;
            while (off < r) {
                ssize_t w = write(fd, buf + off, (size_t)(r - off));
                if (w < 0) {
                    if (errno == EAGAIN) {
                        struct timespec ts = {0, 50000};
                        nanosleep(&ts, NULL);
                        continue;
                    }
                    close(fd);
                    break;
                }
                off += w;
            }
        }
    }
    return 0;
}
