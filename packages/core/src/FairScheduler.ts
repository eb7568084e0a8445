/**
 * A scheduler that lets the event loop turn at least every few milliseconds.
 *
 * Effect's default scheduler drains its queue in microtasks and falls back to a timer only after 2,048 consecutive
 * drains. A run whose steps are synchronous (the offline extractor, better-sqlite3) therefore never lets the event
 * loop turn: the lease heartbeat's timer never fires (the lease expires while the run is alive) and SIGINT/SIGTERM
 * are not even delivered until the run suspends on real I/O. This scheduler drains in microtasks too, but once a
 * time slice is used up it continues from `setImmediate`, after the loop has run its timers and I/O (signals).
 *
 * @since 0.1.0
 */
import * as FiberRef from "effect/FiberRef"
import * as Scheduler from "effect/Scheduler"

/**
 * A scheduler that yields to the event loop when `sliceMs` have passed since it last did.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (sliceMs = 25): Scheduler.Scheduler => {
  let queue = new Scheduler.PriorityBuckets()
  let pending = false
  let sliceStart = performance.now()

  // The tasks a used-up slice left go first at the next turn, before those scheduled since.
  const postpone = (buckets: Array<[number, Array<Scheduler.Task>]>) => {
    const later = queue.buckets
    queue = new Scheduler.PriorityBuckets()
    for (const [priority, tasks] of [...buckets, ...later]) {
      for (const task of tasks) queue.scheduleTask(task, priority)
    }
    schedule()
  }

  // Stops at the end of the slice instead of starting the queue's other fibers only to make each yield after one
  // step: that advanced every fiber by one step per turn of the event loop, and a commit of many steps crawled.
  const drain = () => {
    pending = false
    const buckets = queue.buckets
    queue = new Scheduler.PriorityBuckets()
    for (let b = 0; b < buckets.length; b++) {
      const [priority, tasks] = buckets[b]!
      for (let i = 0; i < tasks.length; i++) {
        if (performance.now() - sliceStart >= sliceMs) {
          return postpone([[priority, tasks.slice(i)], ...buckets.slice(b + 1)])
        }
        tasks[i]!()
      }
    }
  }

  const schedule = () => {
    if (pending) return
    pending = true
    if (performance.now() - sliceStart < sliceMs) {
      queueMicrotask(drain)
      return
    }
    setImmediate(() => {
      sliceStart = performance.now()
      drain()
    })
  }

  return {
    scheduleTask: (task, priority) => {
      queue.scheduleTask(task, priority)
      schedule()
    },
    // Also by time: a fiber that ran one long synchronous step (an extractor call) yields at its next step, whatever
    // its step count, or fibers that end before `maxOpsBeforeYield` steps would never let the event loop turn.
    shouldYield: (fiber) =>
      fiber.currentOpCount > fiber.getFiberRef(FiberRef.currentMaxOpsBeforeYield) ||
        performance.now() - sliceStart >= sliceMs ?
        fiber.getFiberRef(FiberRef.currentSchedulingPriority) :
        false
  }
}

/**
 * The process's fair scheduler, shared by every execution in it (`Workflow.execute`, remote extraction, the CLI).
 * A scheduler per execution took a time slice per execution in each turn of the event loop: with 100 runs in one
 * process the loop's delay reached a p99 of 285 ms to 414 ms (a lease heartbeat, an HTTP request or a signal waited
 * that long), against 36 ms to 38 ms shared, with 1.2x the batches per second (pnpm bench, section 5).
 *
 * @since 0.1.0
 * @category instances
 */
export const shared: Scheduler.Scheduler = make()
