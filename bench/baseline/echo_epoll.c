/* The physical-limit baseline of the net benchmarks: a bare, single-threaded
 * epoll echo server in C. It does the least any event loop must do for an
 * echo (one epoll_wait, one read and one write per message), so its CPU time
 * per round trip is the kernel's share; what an event loop spends above it
 * is the loop's own cost.
 *
 *   echo_epoll ADDRESS        (see address.h; port 0 picks a free port)
 *
 * It speaks to the harness like bench/net_server.py: prints "ready ADDRESS"
 * once it listens, echoes until its stdin reaches end of file, then prints
 * {"cpu": SECONDS}, the process CPU time spent in between.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "address.h"

#define MAX_FDS 4096
#define BUFFER_SIZE (256 * 1024)   /* what asyncio reads at most per call */
/* Room for ten 10 KiB datagrams at once; as in bench/net_server.py. */
#define DATAGRAM_RECEIVE_BUFFER (1024 * 1024)

/* Bytes a connection could not write yet; it is not read until they are. */
struct backlog {
    char *data;
    size_t length, offset;
};

static struct backlog backlogs[MAX_FDS];
static char buffer[BUFFER_SIZE];
static int epoll_fd;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static double process_cpu_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

static void watch(int fd, unsigned events, int op)
{
    struct epoll_event event = {.events = events, .data.fd = fd};
    if (epoll_ctl(epoll_fd, op, fd, &event) < 0)
        die("epoll_ctl");
}

static int listen_on(const struct address *address)
{
    int fd = socket(address->family, address->type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0)
        die("socket");
    if (address->family == AF_INET)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (bind(fd, (const struct sockaddr *)&address->storage, address->length) < 0)
        die("bind");
    if (address->type == SOCK_STREAM && listen(fd, 1024) < 0)
        die("listen");
    int receive_buffer = DATAGRAM_RECEIVE_BUFFER;
    if (address->type == SOCK_DGRAM)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    return fd;
}

static void close_connection(int fd)
{
    free(backlogs[fd].data);
    backlogs[fd] = (struct backlog){0};
    close(fd);   /* also removes it from the epoll set */
}

static void accept_all(int listener, int family)
{
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                perror("accept4");
            return;
        }
        if (fd >= MAX_FDS) {
            close(fd);
            continue;
        }
        if (family == AF_INET) {
            int on = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        }
        watch(fd, EPOLLIN, EPOLL_CTL_ADD);
    }
}

/* Writes what is left of the connection's backlog; returns -1 on error. */
static int flush_backlog(int fd)
{
    struct backlog *backlog = &backlogs[fd];
    while (backlog->offset < backlog->length) {
        ssize_t n = send(fd, backlog->data + backlog->offset,
                         backlog->length - backlog->offset, MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        backlog->offset += n;
    }
    free(backlog->data);
    *backlog = (struct backlog){0};
    watch(fd, EPOLLIN, EPOLL_CTL_MOD);
    return 0;
}

static void echo_stream(int fd, unsigned events)
{
    if (backlogs[fd].data) {
        if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && flush_backlog(fd) < 0)
            close_connection(fd);
        return;
    }
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            close_connection(fd);
        return;
    }
    ssize_t sent = send(fd, buffer, n, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            close_connection(fd);
            return;
        }
        sent = 0;
    }
    if (sent < n) {
        struct backlog *backlog = &backlogs[fd];
        backlog->length = n - sent;
        backlog->data = malloc(backlog->length);
        if (!backlog->data)
            die("malloc");
        memcpy(backlog->data, buffer + sent, backlog->length);
        watch(fd, EPOLLOUT, EPOLL_CTL_MOD);
    }
}

static void echo_datagrams(int fd)
{
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t peer_length = sizeof peer;
        ssize_t n = recvfrom(fd, buffer, sizeof buffer, 0,
                             (struct sockaddr *)&peer, &peer_length);
        if (n < 0)
            return;
        sendto(fd, buffer, n, 0, (struct sockaddr *)&peer, peer_length);
    }
}

/* Returns once stdin reports end of file (or an error). */
static void serve(int listener, const struct address *address)
{
    struct epoll_event events[64];
    for (;;) {
        int count = epoll_wait(epoll_fd, events, 64, -1);
        if (count < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < count; i++) {
            int fd = events[i].data.fd;
            if (fd == STDIN_FILENO) {
                if (read(STDIN_FILENO, buffer, sizeof buffer) <= 0)
                    return;
            } else if (fd != listener) {
                echo_stream(fd, events[i].events);
            } else if (address->type == SOCK_DGRAM) {
                echo_datagrams(fd);
            } else {
                accept_all(listener, address->family);
            }
        }
    }
}

int main(int argc, char **argv)
{
    struct address address;
    char bound[160];
    if (argc != 2 || parse_address(argv[1], &address) < 0) {
        fprintf(stderr, "usage: %s tcp:HOST:PORT|udp:HOST:PORT|unix:PATH\n", argv[0]);
        return 2;
    }
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0)
        die("epoll_create1");
    int listener = listen_on(&address);
    watch(listener, EPOLLIN, EPOLL_CTL_ADD);
    watch(STDIN_FILENO, EPOLLIN, EPOLL_CTL_ADD);

    format_bound_address(listener, &address, bound, sizeof bound);
    printf("ready %s\n", bound);
    fflush(stdout);
    double started = process_cpu_seconds();
    serve(listener, &address);
    printf("{\"cpu\": %.9f}\n", process_cpu_seconds() - started);
    if (address.family == AF_UNIX)
        unlink(((struct sockaddr_un *)&address.storage)->sun_path);
    return 0;
}
