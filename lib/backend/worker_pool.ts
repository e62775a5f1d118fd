/**
 * A fixed pool of Web Workers running {@linkcode cpuWork}, with a FIFO queue for tasks beyond
 * the pool, so the backend's main thread stays free to answer calls, keep its lease and report
 * load while heavy work runs.
 *
 * @module
 */
import { cpuWork } from "./cpu_work.ts";

const WORKER_SOURCE = `const cpuWork = ${cpuWork.toString()};
self.onmessage = (event) => { self.postMessage(cpuWork(event.data)); };`;

interface Job {
  iterations: number;
  resolve: (checksum: number) => void;
  reject: (error: Error) => void;
}

/** Thrown to queued and running jobs when the pool closes. */
export class PoolClosedError extends Error {
  /** Creates the error. */
  constructor() {
    super("The worker pool is closed");
    this.name = "PoolClosedError";
  }
}

/** Runs CPU-heavy jobs on `size` workers. */
export class WorkerPool {
  #idle: Worker[] = [];
  #busy = new Map<Worker, Job>();
  #queue: Job[] = [];
  #url: string;
  #closed = false;

  /** Starts `size` workers. */
  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(`Cannot create worker pool as 'size' must be >= 1: got ${size}`);
    }
    this.#url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
    for (let i = 0; i < size; i++) {
      const worker = new Worker(this.#url, { type: "module" });
      worker.onmessage = (event: MessageEvent<number>) => this.#done(worker, event.data);
      worker.onerror = (event) => {
        event.preventDefault();
        this.#failed(worker, new Error(`Worker failed: ${event.message}`));
      };
      this.#idle.push(worker);
    }
  }

  /** Jobs running or waiting. */
  get inFlight(): number {
    return this.#busy.size + this.#queue.length;
  }

  /** Jobs waiting for a worker. */
  get queueLength(): number {
    return this.#queue.length;
  }

  /** Runs `iterations` of work; resolves with its checksum. */
  run(iterations: number): Promise<number> {
    if (this.#closed) return Promise.reject(new PoolClosedError());
    return new Promise((resolve, reject) => {
      this.#queue.push({ iterations, resolve, reject });
      this.#dispatch();
    });
  }

  /** Terminates the workers; pending jobs reject with {@linkcode PoolClosedError}. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const job of [...this.#queue, ...this.#busy.values()]) job.reject(new PoolClosedError());
    this.#queue = [];
    for (const worker of [...this.#idle, ...this.#busy.keys()]) worker.terminate();
    this.#idle = [];
    this.#busy.clear();
    URL.revokeObjectURL(this.#url);
  }

  #dispatch(): void {
    while (this.#idle.length > 0 && this.#queue.length > 0) {
      const worker = this.#idle.pop()!;
      const job = this.#queue.shift()!;
      this.#busy.set(worker, job);
      worker.postMessage(job.iterations);
    }
  }

  #done(worker: Worker, checksum: number): void {
    const job = this.#busy.get(worker);
    if (!job) return;
    this.#busy.delete(worker);
    this.#idle.push(worker);
    job.resolve(checksum);
    this.#dispatch();
  }

  #failed(worker: Worker, error: Error): void {
    const job = this.#busy.get(worker);
    this.#busy.delete(worker);
    this.#idle.push(worker);
    job?.reject(error);
    this.#dispatch();
  }
}
