/* gw_queue: a bounded, blocking FIFO of pointers between threads.
 *
 * Owns its slots and its lock, not the items: whoever pops an item owns
 * it, and items left at gw_queue_free() are handed to a caller's free
 * function. A full queue blocks the producer; that is the back-pressure
 * the pipeline relies on to keep memory bounded.
 */
#ifndef GW_QUEUE_H
#define GW_QUEUE_H

#include <stddef.h>

struct gw_queue;

struct gw_queue *gw_queue_new(size_t capacity);
/* free_item (may be NULL) is called for every item still queued. */
void gw_queue_free(struct gw_queue *q, void (*free_item)(void *item));

/* Blocks while the queue is full. Returns 0, or -ESHUTDOWN once the queue
 * is closed (the item is then still the caller's). */
int gw_queue_push(struct gw_queue *q, void *item);
/* The same without waiting: -EAGAIN when the queue is full. */
int gw_queue_try_push(struct gw_queue *q, void *item);
/* Waits up to timeout_ms (negative: forever) for an item. Returns NULL on
 * timeout, or when the queue is closed and empty. */
void *gw_queue_pop(struct gw_queue *q, int timeout_ms);
/* Refuses new items and wakes every waiter; queued items can still be
 * popped, so consumers drain before they stop. */
void gw_queue_close(struct gw_queue *q);
int gw_queue_closed(struct gw_queue *q);
size_t gw_queue_depth(struct gw_queue *q);

#endif
