/* The client side of the net benchmarks, in C so that the load costs little
 * CPU and the server under test, not the client, sets the pace.
 *
 *   loadgen MODE ADDRESS CONNECTIONS SIZE SECONDS
 *
 * Opens CONNECTIONS sockets to ADDRESS (see address.h; for udp:, one
 * connected datagram socket each) and keeps one request in flight on each:
 *
 *   echo   send SIZE bytes, wait until all SIZE come back (for UDP: one
 *          datagram of SIZE bytes each way), repeat
 *   http   send a keep-alive "GET /" request, wait for the whole response
 *          (headers and Content-Length body), repeat
 *
 * Connections stop starting round trips SECONDS after all are connected.
 * Prints "ROUND_TRIPS ELAPSED_SECONDS" (up to the last completed round trip).
 * Exits with status 1 and a message on stderr when the server closes a
 * connection, fails, sends something unexpected or goes silent for 3 s.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "address.h"

#define SILENCE_LIMIT_MS 3000
#define HEAD_CAPACITY 4096
#define READ_SIZE (256 * 1024)

static const char HTTP_REQUEST[] =
    "GET / HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    "User-Agent: ferroloop-bench\r\n"
    "Accept: */*\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

struct connection {
    int fd;
    size_t sent;       /* bytes of the current request written */
    size_t received;   /* bytes of the current response read */
    size_t expected;   /* response length, 0 while an HTTP head is incomplete */
    char head[HEAD_CAPACITY];
    int finished;
};

static int epoll_fd;
static int http_mode;
static int datagrams;
static const char *request;
static size_t request_length;
static char scratch[READ_SIZE];

static void fail(const char *message)
{
    fprintf(stderr, "loadgen: %s\n", message);
    exit(1);
}

static void fail_errno(const char *what)
{
    perror(what);
    exit(1);
}

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

static void watch(struct connection *c, unsigned events, int op)
{
    struct epoll_event event = {.events = events, .data.ptr = c};
    if (epoll_ctl(epoll_fd, op, c->fd, &event) < 0)
        fail_errno("epoll_ctl");
}

static void open_connection(struct connection *c, const struct address *address)
{
    int on = 1;
    c->fd = socket(address->family, address->type | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        fail_errno("socket");
    if (connect(c->fd, (const struct sockaddr *)&address->storage, address->length) < 0)
        fail_errno("connect");
    if (address->family == AF_INET && address->type == SOCK_STREAM)
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    watch(c, EPOLLIN, EPOLL_CTL_ADD);
}

/* Writes as much of the request as the socket takes; asks for EPOLLOUT
 * while some is left. */
static void send_request(struct connection *c)
{
    while (c->sent < request_length) {
        ssize_t n = send(c->fd, request + c->sent, request_length - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                fail_errno("send");
            watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
            return;
        }
        c->sent += n;
    }
    watch(c, EPOLLIN, EPOLL_CTL_MOD);
}

static void start_round_trip(struct connection *c)
{
    c->sent = 0;
    c->received = 0;
    c->expected = http_mode ? 0 : request_length;
    send_request(c);
}

/* Once the HTTP head is complete, sets the full response length. */
static void parse_http_head(struct connection *c)
{
    char *end = memmem(c->head, c->received, "\r\n\r\n", 4);
    if (!end) {
        if (c->received == HEAD_CAPACITY)
            fail("HTTP response head too long");
        return;
    }
    *end = '\0';
    if (strncmp(c->head, "HTTP/1.1 200 ", 13) != 0)
        fail("HTTP response is not 200 OK");
    const char *length = strcasestr(c->head, "\r\ncontent-length:");
    if (!length)
        fail("HTTP response has no Content-Length");
    c->expected = (end + 4 - c->head) + strtoul(length + 17, NULL, 10);
    if (c->expected > HEAD_CAPACITY)
        fail("HTTP response too long");
}

/* Reads what the server sent; returns 1 when the round trip is complete. */
static int read_response(struct connection *c)
{
    char *into = http_mode ? c->head + c->received : scratch;
    size_t room = http_mode ? HEAD_CAPACITY - c->received : sizeof scratch;
    ssize_t n = recv(c->fd, into, room, 0);
    if (n == 0)
        fail("server closed a connection");
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        fail_errno("recv");
    }
    if (datagrams && (size_t)n != request_length)
        fail("echoed datagram has the wrong size");
    c->received += n;
    if (http_mode && c->expected == 0)
        parse_http_head(c);
    if (c->expected && c->received > c->expected)
        fail("server sent more than was asked for");
    return c->expected && c->received == c->expected;
}

static char *make_message(size_t size)
{
    char *message = malloc(size ? size : 1);
    if (!message)
        fail_errno("malloc");
    for (size_t i = 0; i < size; i++)
        message[i] = 'a' + i % 26;
    return message;
}

int main(int argc, char **argv)
{
    struct address address;
    if (argc != 6 || (strcmp(argv[1], "echo") && strcmp(argv[1], "http"))
        || parse_address(argv[2], &address) < 0) {
        fprintf(stderr, "usage: %s echo|http ADDRESS CONNECTIONS SIZE SECONDS\n", argv[0]);
        return 2;
    }
    http_mode = strcmp(argv[1], "http") == 0;
    datagrams = address.type == SOCK_DGRAM;
    int count = atoi(argv[3]);
    double seconds = atof(argv[5]);
    if (count < 1)
        fail("need at least one connection");
    if (http_mode) {
        request = HTTP_REQUEST;
        request_length = sizeof HTTP_REQUEST - 1;
    } else {
        request_length = strtoul(argv[4], NULL, 10);
        request = make_message(request_length);
    }

    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0)
        fail_errno("epoll_create1");
    struct connection *connections = calloc(count, sizeof *connections);
    struct epoll_event *events = calloc(count, sizeof *events);
    if (!connections || !events)
        fail_errno("calloc");
    for (int i = 0; i < count; i++)
        open_connection(&connections[i], &address);

    double started = now_seconds(), last_done = started;
    unsigned long long round_trips = 0;
    int active = count;
    for (int i = 0; i < count; i++)
        start_round_trip(&connections[i]);
    while (active > 0) {
        int ready = epoll_wait(epoll_fd, events, count, SILENCE_LIMIT_MS);
        if (ready < 0 && errno != EINTR)
            fail_errno("epoll_wait");
        if (ready == 0)
            fail("no answer from the server for 3 seconds");
        for (int i = 0; i < ready; i++) {
            struct connection *c = events[i].data.ptr;
            if (c->finished)
                continue;
            if ((events[i].events & EPOLLOUT) && c->sent < request_length)
                send_request(c);
            if (!(events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) || !read_response(c))
                continue;
            round_trips++;
            last_done = now_seconds();
            if (last_done - started < seconds) {
                start_round_trip(c);
            } else {
                c->finished = 1;
                active--;
            }
        }
    }
    printf("%llu %.6f\n", round_trips, last_done - started);
    return 0;
}
