/* Socket addresses as the benchmark harness writes them, shared by the
 * baseline echo server and the load generator so both read the same text:
 *
 *   tcp:HOST:PORT    a TCP socket (IPv4)
 *   udp:HOST:PORT    a UDP socket (IPv4)
 *   unix:PATH        a Unix stream socket
 */
#ifndef BENCH_ADDRESS_H
#define BENCH_ADDRESS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

struct address {
    int family;   /* AF_INET or AF_UNIX */
    int type;     /* SOCK_STREAM or SOCK_DGRAM */
    struct sockaddr_storage storage;
    socklen_t length;
};

/* Fills *out from TEXT; returns 0, or -1 when TEXT is not an address. */
static inline int parse_address(const char *text, struct address *out)
{
    memset(out, 0, sizeof *out);
    if (strncmp(text, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&out->storage;
        const char *path = text + 5;
        if (strlen(path) >= sizeof un->sun_path)
            return -1;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        out->family = AF_UNIX;
        out->type = SOCK_STREAM;
        out->length = sizeof *un;
        return 0;
    }
    if (strncmp(text, "tcp:", 4) == 0)
        out->type = SOCK_STREAM;
    else if (strncmp(text, "udp:", 4) == 0)
        out->type = SOCK_DGRAM;
    else
        return -1;

    char host[64];
    const char *colon = strrchr(text + 4, ':');
    size_t host_length = colon ? (size_t)(colon - (text + 4)) : 0;
    if (!colon || host_length >= sizeof host)
        return -1;
    memcpy(host, text + 4, host_length);
    host[host_length] = '\0';

    struct sockaddr_in *in = (struct sockaddr_in *)&out->storage;
    in->sin_family = AF_INET;
    in->sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
        return -1;
    out->family = AF_INET;
    out->length = sizeof *in;
    return 0;
}

/* Writes the address socket FD is bound to, in the text form above. */
static inline void format_bound_address(int fd, const struct address *address,
                                 char *text, size_t size)
{
    if (address->family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&address->storage;
        snprintf(text, size, "unix:%s", un->sun_path);
        return;
    }
    struct sockaddr_in bound;
    socklen_t length = sizeof bound;
    char host[INET_ADDRSTRLEN];
    getsockname(fd, (struct sockaddr *)&bound, &length);
    inet_ntop(AF_INET, &bound.sin_addr, host, sizeof host);
    snprintf(text, size, "%s:%s:%d", address->type == SOCK_DGRAM ? "udp" : "tcp",
             host, ntohs(bound.sin_port));
}

#endif
