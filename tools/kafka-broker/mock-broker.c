/*
 * A real Kafka-protocol broker for tests and local development: librdkafka's mock cluster
 * (Debian's librdkafka-dev), which speaks the Kafka wire protocol on a random localhost port.
 *
 *   kafka-broker [--watch-stdin] [--port=N] [topic[:partitions]]...
 *
 * Prints the bootstrap address ("127.0.0.1:PORT") on one line of stdout, pre-creates the
 * given topics (others are created on first use), and runs until SIGTERM or SIGINT, or, with
 * --watch-stdin, until stdin closes (so it never outlives the test process that started it).
 * With --port=N it listens on that port instead of a random one, so that a broker started after
 * another one died is found at the same address (Linux: see bind() below). SIGUSR1 takes the
 * broker down (its connections are closed, new ones refused), SIGUSR2 brings it back, with its
 * topics, offsets and groups: a broker restart as its clients see it
 * (test/broker-faults.e2e-spec.ts).
 * Build and start it with scripts/kafka-broker.mjs.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* --port: the port the mock broker's listener gets instead of 0, once. */
static int fixed_port = 0;

/*
 * librdkafka 2.0.2's mock cluster binds its broker to 127.0.0.1 port 0, with no option to choose.
 * This definition takes the place of libc's bind() for librdkafka (on Linux the executable's
 * symbols come first), and gives the first IPv4 port-0 bind the --port port, with SO_REUSEADDR
 * so that a restarted broker can take it while the old connections are in TIME_WAIT.
 */
int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  if (fixed_port > 0 && addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in) &&
      ((const struct sockaddr_in *)addr)->sin_port == 0) {
    struct sockaddr_in fixed;
    int on = 1;
    memcpy(&fixed, addr, sizeof fixed);
    fixed.sin_port = htons((unsigned short)fixed_port);
    fixed_port = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    return (int)syscall(SYS_bind, fd, (const struct sockaddr *)&fixed, (socklen_t)sizeof fixed);
  }
  return (int)syscall(SYS_bind, fd, addr, len);
}

static void *watch_stdin(void *arg) {
  char buf[256];
  (void)arg;
  while (read(STDIN_FILENO, buf, sizeof buf) > 0) {
  }
  kill(getpid(), SIGTERM);
  return NULL;
}

int main(int argc, char **argv) {
  char errstr[512];
  sigset_t stop;
  int sig, i, watch = 0;

  /* Read before the mock cluster binds its listener. */
  for (i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--port=", 7) == 0) {
      fixed_port = atoi(argv[i] + 7);
    }
  }

  /* Blocked before librdkafka starts its threads, so they inherit the mask and only sigwait sees the signals. */
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGUSR1);
  sigaddset(&stop, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);

  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* The handle only hosts the mock cluster; its "no bootstrap.servers" warning is noise. */
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    fprintf(stderr, "kafka-broker: %s\n", errstr);
    return 1;
  }
  rd_kafka_mock_cluster_t *mcluster = rd_kafka_mock_cluster_new(rk, 1);
  if (!mcluster) {
    fprintf(stderr, "kafka-broker: could not start the mock cluster\n");
    rd_kafka_destroy(rk);
    return 1;
  }
  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--watch-stdin") == 0) {
      watch = 1;
      continue;
    }
    if (strncmp(argv[i], "--port=", 7) == 0) {
      continue;
    }
    char *colon = strrchr(argv[i], ':');
    int partitions = 1;
    if (colon) {
      *colon = '\0';
      partitions = atoi(colon + 1) > 0 ? atoi(colon + 1) : 1;
    }
    if (rd_kafka_mock_topic_create(mcluster, argv[i], partitions, 1) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      fprintf(stderr, "kafka-broker: could not create topic %s\n", argv[i]);
    }
  }
  printf("%s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
  fflush(stdout);

  pthread_t watcher;
  if (watch) {
    pthread_create(&watcher, NULL, watch_stdin, NULL);
    pthread_detach(watcher);
  }
  for (;;) {
    sigwait(&stop, &sig);
    if (sig == SIGUSR1) {
      rd_kafka_mock_broker_set_down(mcluster, -1);
    } else if (sig == SIGUSR2) {
      rd_kafka_mock_broker_set_up(mcluster, -1);
    } else {
      break;
    }
  }

  rd_kafka_mock_cluster_destroy(mcluster);
  rd_kafka_destroy(rk);
  return 0;
}
