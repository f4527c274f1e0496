/*
 * A real Kafka-protocol broker for tests and local development: librdkafka's mock cluster
 * (Debian's librdkafka-dev), which speaks the Kafka wire protocol on a random localhost port.
 *
 *   kafka-broker [--watch-stdin] [topic[:partitions]]...
 *
 * Prints the bootstrap address ("127.0.0.1:PORT") on one line of stdout, pre-creates the
 * given topics (others are created on first use), and runs until SIGTERM or SIGINT, or, with
 * --watch-stdin, until stdin closes (so it never outlives the test process that started it).
 * Build and start it with scripts/kafka-broker.mjs.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

  /* Blocked before librdkafka starts its threads, so they inherit the mask and only sigwait sees the signals. */
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
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
  sigwait(&stop, &sig);

  rd_kafka_mock_cluster_destroy(mcluster);
  rd_kafka_destroy(rk);
  return 0;
}
