// A learning Ethernet switch in user space that delays frames between zones: the multi-host
// bench's stand-in for a bridge plus tc netem on kernels built without netem (sch_netem and
// sch_prio absent, as on the CI machines' kernel). Built and started by bench/hosts/netns.ts.
//
// It opens one TAP device per simulated host (named <prefix>tap<i>, created in the switch's own
// namespace; netns.ts then moves each into its host's namespace as eth0, the file descriptor stays
// here). A frame from port i to port j waits the one-way delay of the zone pair (half the round
// trip: both directions pass through here), in one FIFO per delay class, so order is kept.
// Broadcasts (ARP) and frames to or from a port without a zone ("-": the control namespace) pass
// at once. The delays are read from the control file at start and on SIGHUP: "<intra_us> <cross_us>"
// (round trips, microseconds); it prints "ready" once the devices exist, and on each change
// "delay <a> <b> dropped <n> write_failed <m>": frames lost so far to a full delay queue, and
// frames a TAP device refused (one not up yet at start, or its queue full).
//   delay-switch <prefix> <control-file> <zone of port 0> <zone of port 1> ...
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS 32
#define MAX_FRAME 1600
#define QUEUE_LEN 16384 /* per delayed class; a full queue drops, like netem's limit */
#define MACS 256

struct frame {
  uint64_t due;
  int port;
  int len;
  unsigned char data[MAX_FRAME];
};
struct queue {
  struct frame *buf;
  unsigned head, tail; /* tail - head = frames waiting */
};

static int ports;
static int tap[MAX_PORTS];
static char zone[MAX_PORTS];
static unsigned char mac[MACS][6];
static int mac_port[MACS];
static int macs;
static uint64_t one_way_ns[2]; /* [0] same zone, [1] across zones */
static struct queue q[2];
static unsigned long long dropped;     /* queue full or frame too long: the delay's own loss */
static unsigned long long write_failed; /* the TAP device refused it (e.g. not up yet, at start) */
static const char *control;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void read_control(void) {
  FILE *f = fopen(control, "r");
  long intra = 0, cross = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &intra, &cross) != 2) intra = cross = 0;
    fclose(f);
  }
  one_way_ns[0] = (uint64_t)intra * 1000ull / 2;
  one_way_ns[1] = (uint64_t)cross * 1000ull / 2;
  printf("delay %ld %ld dropped %llu write_failed %llu\n", intra, cross, dropped, write_failed);
  fflush(stdout);
}

static int lookup(const unsigned char *m) {
  for (int i = 0; i < macs; i++)
    if (memcmp(mac[i], m, 6) == 0) return mac_port[i];
  return -1;
}

static void learn(const unsigned char *m, int port) {
  for (int i = 0; i < macs; i++)
    if (memcmp(mac[i], m, 6) == 0) {
      mac_port[i] = port;
      return;
    }
  if (macs < MACS) {
    memcpy(mac[macs], m, 6);
    mac_port[macs++] = port;
  }
}

static void send_to(int port, const unsigned char *data, int len) {
  /* A full TAP queue drops the frame, as a busy link would; TCP retransmits. */
  if (write(tap[port], data, len) < 0) write_failed++;
}

static void forward(int from, const unsigned char *data, int len) {
  if (len < 14) return;
  learn(data + 6, from);
  int to = (data[0] & 1) ? -1 : lookup(data);
  if (to < 0) { /* broadcast, multicast or not yet learned: flood, undelayed */
    for (int p = 0; p < ports; p++)
      if (p != from) send_to(p, data, len);
    return;
  }
  if (to == from) return;
  int cls = zone[from] == zone[to] ? 0 : 1;
  uint64_t delay = (zone[from] == '-' || zone[to] == '-') ? 0 : one_way_ns[cls];
  if (delay == 0 && q[cls].tail == q[cls].head) {
    send_to(to, data, len);
    return;
  }
  struct queue *qu = &q[cls];
  if (qu->tail - qu->head >= QUEUE_LEN || len > MAX_FRAME) {
    dropped++;
    return;
  }
  struct frame *f = &qu->buf[qu->tail % QUEUE_LEN];
  f->due = now_ns() + delay;
  f->port = to;
  f->len = len;
  memcpy(f->data, data, len);
  qu->tail++;
}

static void flush(uint64_t now) {
  for (int c = 0; c < 2; c++) {
    struct queue *qu = &q[c];
    while (qu->head != qu->tail) {
      struct frame *f = &qu->buf[qu->head % QUEUE_LEN];
      if (f->due > now) break;
      send_to(f->port, f->data, f->len);
      qu->head++;
    }
  }
}

static uint64_t next_due(void) {
  uint64_t due = 0;
  for (int c = 0; c < 2; c++) {
    if (q[c].head == q[c].tail) continue;
    uint64_t d = q[c].buf[q[c].head % QUEUE_LEN].due;
    if (due == 0 || d < due) due = d;
  }
  return due;
}

int main(int argc, char **argv) {
  if (argc < 4 || argc - 3 > MAX_PORTS) {
    fprintf(stderr, "usage: delay-switch <prefix> <control-file> <zone>... (1-%d ports)\n", MAX_PORTS);
    return 2;
  }
  control = argv[2];
  ports = argc - 3;
  prctl(PR_SET_TIMERSLACK, 1UL); /* microsecond delays: no 50 us timer slack */
  for (int c = 0; c < 2; c++) {
    q[c].buf = calloc(QUEUE_LEN, sizeof(struct frame));
    if (!q[c].buf) return 1;
  }
  int ep = epoll_create1(0);
  for (int i = 0; i < ports; i++) {
    zone[i] = argv[3 + i][0];
    tap[i] = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
    if (tap[i] < 0) {
      perror("open /dev/net/tun");
      return 1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%stap%d", argv[1], i);
    if (ioctl(tap[i], TUNSETIFF, &ifr) < 0) {
      perror("TUNSETIFF");
      return 1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, tap[i], &ev);
  }
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct epoll_event tev = {.events = EPOLLIN, .data.u32 = 1000};
  epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK);
  struct epoll_event sev = {.events = EPOLLIN, .data.u32 = 1001};
  epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &sev);
  read_control();
  printf("ready\n");
  fflush(stdout);

  static unsigned char buf[65536];
  struct epoll_event evs[64];
  uint64_t armed = 0;
  for (;;) {
    uint64_t due = next_due();
    if (due != armed) {
      struct itimerspec its;
      memset(&its, 0, sizeof its);
      if (due) { /* absolute; 0 would disarm, so at least 1 ns */
        its.it_value.tv_sec = (time_t)(due / 1000000000ull);
        its.it_value.tv_nsec = (long)(due % 1000000000ull);
        if (!its.it_value.tv_sec && !its.it_value.tv_nsec) its.it_value.tv_nsec = 1;
      }
      timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
      armed = due;
    }
    int n = epoll_wait(ep, evs, 64, -1);
    if (n < 0 && errno != EINTR) {
      perror("epoll_wait");
      return 1;
    }
    for (int e = 0; e < n; e++) {
      uint32_t id = evs[e].data.u32;
      if (id == 1000) {
        uint64_t x;
        while (read(tfd, &x, sizeof x) > 0) {}
        armed = 0;
      } else if (id == 1001) {
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) > 0) {}
        read_control();
      } else {
        /* A bounded batch per wake, so one busy port cannot starve the others or the timer. */
        for (int k = 0; k < 64; k++) {
          ssize_t len = read(tap[id], buf, sizeof buf);
          if (len <= 0) break;
          forward((int)id, buf, (int)len);
        }
      }
    }
    flush(now_ns());
  }
}
