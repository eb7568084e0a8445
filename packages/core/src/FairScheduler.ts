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

  const drain = () => {
    pending = false
    const buckets = queue.buckets
    queue = new Scheduler.PriorityBuckets()
    for (const [, tasks] of buckets) {
      for (const task of tasks) task()
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
