#include "gw_queue.h"

#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct gw_queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    void **slots;
    size_t capacity;
    size_t head; /* next to pop */
    size_t count;
    int closed;
};

struct gw_queue *gw_queue_new(size_t capacity)
{
    struct gw_queue *q;
    pthread_condattr_t attr;

    if (capacity == 0)
        return NULL;
    q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->slots = calloc(capacity, sizeof(*q->slots));
    if (!q->slots) {
        free(q);
        return NULL;
    }
    q->capacity = capacity;
    pthread_mutex_init(&q->lock, NULL);
    /* Timed waits run on the monotonic clock so a wall-clock jump cannot
     * stall a consumer. */
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&q->not_empty, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&q->not_full, NULL);
    return q;
}

void gw_queue_free(struct gw_queue *q, void (*free_item)(void *item))
{
    if (!q)
        return;
    for (size_t i = 0; i < q->count; i++) {
        void *item = q->slots[(q->head + i) % q->capacity];
        if (free_item)
            free_item(item);
    }
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->lock);
    free(q->slots);
    free(q);
}

static int push(struct gw_queue *q, void *item, bool wait)
{
    int r = 0;

    pthread_mutex_lock(&q->lock);
    while (wait && q->count == q->capacity && !q->closed)
        pthread_cond_wait(&q->not_full, &q->lock);
    if (q->closed) {
        r = -ESHUTDOWN;
    } else if (q->count == q->capacity) {
        r = -EAGAIN;
    } else {
        q->slots[(q->head + q->count) % q->capacity] = item;
        q->count++;
        pthread_cond_signal(&q->not_empty);
    }
    pthread_mutex_unlock(&q->lock);
    return r;
}

int gw_queue_push(struct gw_queue *q, void *item)
{
    return push(q, item, true);
}

int gw_queue_try_push(struct gw_queue *q, void *item)
{
    return push(q, item, false);
}

void *gw_queue_pop(struct gw_queue *q, int timeout_ms)
{
    struct timespec deadline;
    void *item = NULL;

    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&q->lock);
    while (q->count == 0 && !q->closed) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&q->not_empty, &q->lock);
        } else if (pthread_cond_timedwait(&q->not_empty, &q->lock, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    if (q->count > 0) {
        item = q->slots[q->head];
        q->head = (q->head + 1) % q->capacity;
        q->count--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->lock);
    return item;
}

void gw_queue_close(struct gw_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->lock);
}

int gw_queue_closed(struct gw_queue *q)
{
    int closed;

    pthread_mutex_lock(&q->lock);
    closed = q->closed;
    pthread_mutex_unlock(&q->lock);
    return closed;
}

size_t gw_queue_depth(struct gw_queue *q)
{
    size_t count;

    pthread_mutex_lock(&q->lock);
    count = q->count;
    pthread_mutex_unlock(&q->lock);
    return count;
}
