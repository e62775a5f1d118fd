/**
 * A FIFO of request numbers on a ring buffer that grows by doubling: a server's queue in the
 * simulator, with no allocation per request once it has reached its size.
 *
 * @module
 */

/** A first-in, first-out queue of non-negative integers. */
export class Fifo {
  #items: Int32Array;
  #head = 0;
  #size = 0;

  /** Creates an empty queue with room for `capacity` items before it grows. */
  constructor(capacity = 16) {
    this.#items = new Int32Array(capacity);
  }

  /** Items waiting. */
  get size(): number {
    return this.#size;
  }

  /** Adds `item` at the back. */
  push(item: number): void {
    const items = this.#items;
    if (this.#size === items.length) {
      const grown = new Int32Array(items.length * 2);
      for (let i = 0; i < this.#size; i++) grown[i] = items[(this.#head + i) % items.length];
      this.#items = grown;
      this.#head = 0;
    }
    this.#items[(this.#head + this.#size++) % this.#items.length] = item;
  }

  /** Removes and returns the front item (-1 when empty). */
  shift(): number {
    if (this.#size === 0) return -1;
    const item = this.#items[this.#head];
    this.#head = (this.#head + 1) % this.#items.length;
    this.#size--;
    return item;
  }
}
