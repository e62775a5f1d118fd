/**
 * The simulator's event queue: a binary min-heap of (time, kind, payload), ties broken by
 * insertion order so a run is deterministic. Events live in parallel typed arrays that grow by
 * doubling, so scheduling and popping allocate nothing once the queue has reached its size.
 *
 * @module
 */

/** A min-heap of events keyed by time, then by insertion order. */
export class EventQueue {
  #time: Float64Array;
  #order: Float64Array;
  #kind: Uint8Array;
  #payload: Int32Array;
  #size = 0;
  #inserted = 0;
  /** Time of the event last popped. */
  time = 0;
  /** Kind of the event last popped. */
  kind = 0;
  /** Payload of the event last popped. */
  payload = 0;

  /** Creates an empty queue with room for `capacity` events before it grows. */
  constructor(capacity = 64) {
    this.#time = new Float64Array(capacity);
    this.#order = new Float64Array(capacity);
    this.#kind = new Uint8Array(capacity);
    this.#payload = new Int32Array(capacity);
  }

  /** Events waiting. */
  get size(): number {
    return this.#size;
  }

  /** Schedules an event of `kind` with `payload` at `time`. */
  push(time: number, kind: number, payload: number): void {
    if (this.#size === this.#time.length) this.#grow();
    const order = this.#inserted++;
    let k = this.#size++;
    while (k > 0) {
      const parent = (k - 1) >> 1;
      const pt = this.#time[parent];
      if (pt < time || (pt === time && this.#order[parent] < order)) break;
      this.#move(parent, k);
      k = parent;
    }
    this.#time[k] = time;
    this.#order[k] = order;
    this.#kind[k] = kind;
    this.#payload[k] = payload;
  }

  /**
   * Removes the earliest event into {@linkcode time}, {@linkcode kind} and
   * {@linkcode payload}; `false` when the queue is empty.
   */
  pop(): boolean {
    if (this.#size === 0) return false;
    this.time = this.#time[0];
    this.kind = this.#kind[0];
    this.payload = this.#payload[0];
    const last = --this.#size;
    if (last === 0) return true;
    const time = this.#time[last];
    const order = this.#order[last];
    const kind = this.#kind[last];
    const payload = this.#payload[last];
    let k = 0;
    while (true) {
      let child = 2 * k + 1;
      if (child >= last) break;
      const right = child + 1;
      if (right < last && this.#before(right, child)) child = right;
      const ct = this.#time[child];
      if (ct > time || (ct === time && this.#order[child] > order)) break;
      this.#move(child, k);
      k = child;
    }
    this.#time[k] = time;
    this.#order[k] = order;
    this.#kind[k] = kind;
    this.#payload[k] = payload;
    return true;
  }

  #before(a: number, b: number): boolean {
    const ta = this.#time[a];
    const tb = this.#time[b];
    return ta < tb || (ta === tb && this.#order[a] < this.#order[b]);
  }

  #move(from: number, to: number): void {
    this.#time[to] = this.#time[from];
    this.#order[to] = this.#order[from];
    this.#kind[to] = this.#kind[from];
    this.#payload[to] = this.#payload[from];
  }

  #grow(): void {
    const n = this.#time.length * 2;
    const time = new Float64Array(n);
    const order = new Float64Array(n);
    const kind = new Uint8Array(n);
    const payload = new Int32Array(n);
    time.set(this.#time);
    order.set(this.#order);
    kind.set(this.#kind);
    payload.set(this.#payload);
    this.#time = time;
    this.#order = order;
    this.#kind = kind;
    this.#payload = payload;
  }
}
