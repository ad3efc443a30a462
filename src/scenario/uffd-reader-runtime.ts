/**
 * The VMM's userfaultfd reader threads on a worker (lib/userfaultfd_util.c's
 * uffd_handler_thread_fn() with demand_paging_test's handle_uffd_page_request()): each reader
 * waits for a message, sleeps the -d delay, resolves demand_paging_size bytes at the fault
 * address with UFFDIO_COPY (MISSING) or UFFDIO_CONTINUE (MINOR), tolerating EEXIST, until the
 * VMM tells it to stop after the vCPUs joined.
 *
 * The selftest has `-r` reader threads per uffd, one uffd per vCPU (or one for all with -a):
 * hundreds of threads. Here the (uffd, reader) pairs are spread over a few worker threads, as
 * vCPUs are: in each pass the readers of one uffd hosted here each read one message (they race
 * for the fd as threads do, so two messages for one page can be in two readers' hands), then
 * each handles its own. A thread with nothing to read sleeps on its reader-board line
 * (EPOLLEXCLUSIVE: a queued message wakes one reader thread).
 *
 * Clocks: every reader op is counted (and so priced) on this thread; the modeled ns of one
 * resolution (read + delay + ioctl) is handed to the woken vCPUs as the time they slept. The
 * resolve latency histogram records, per resolved message, the wall time from the fault's
 * queueing to its wake and that modeled time.
 */
import { threadId } from 'node:worker_threads';
import { Host, type HostHandle, type HostThread } from '../host/host.js';
import { Vma, type VmaHandle } from '../host/mm.js';
import { UffdMode, Userfaultfd, boardCancelSleep, boardPrepareSleep, boardSleep, uffdRangeOf, type UserfaultfdHandle, BoardLayout } from '../host/userfaultfd.js';
import { kEEXIST, mfillAtomicContinue, mfillAtomicCopy } from '../host/mfill.js';
import { Metrics, count, countN } from '../metrics/counters.js';
import { Op } from '../metrics/ops.js';
import { HistogramSet, type EncodedHistograms, type OpHistograms } from '../metrics/histogram.js';

export interface UffdReaderWork {
  uffd: UserfaultfdHandle;
  mode: UffdMode;
  /** This uffd's readers that run on this thread, and the index of the first (for reports). */
  readers: number;
  /** The uffd's reader index of the first of them; the next are readerStride apart (round-robin). */
  firstReader: number;
  readerStride: number;
  /** The VMAs of the VMM process the uffd belongs to (indexed by VMA id). */
  vmas: VmaHandle[];
}

export interface UffdReaderTask {
  slot: number;
  host: HostHandle;
  work: UffdReaderWork[];
  readerBoard: SharedArrayBuffer;
  /** demand_paging_size in 4K pages (the backing page size). */
  resolvePages: number;
  /** -d in ns: counted as modeled time; slept for real only with realDelay. */
  delayNs: number;
  realDelay: boolean;
  cost: Float64Array;
  histogram: string;
}

export interface UffdReaderStats {
  uffd: number;
  reader: number;
  /** Messages this reader resolved, and those it found resolved already (EEXIST). */
  pages: number;
  eexist: number;
  /** Faulting threads its wakes found asleep (fewer than pages when a thread saw the mapping first; more with duplicates). */
  woken: number;
  /** Modeled ns of its resolutions (read, delay, ioctl, wakes). */
  modeledNs: number;
}

export interface UffdReaderResult {
  slot: number;
  threadId: number;
  wallNs: number;
  counters: Float64Array;
  readers: UffdReaderStats[];
  histograms: EncodedHistograms;
}

interface Hosted {
  uffd: Userfaultfd;
  mode: UffdMode;
  readers: number;
  vmas: Vma[];
  stats: UffdReaderStats[];
}

export interface UffdReaderOptions {
  resolvePages: number;
  delayNs: number;
  realDelay: boolean;
  cost: Float64Array;
}

/**
 * The (uffd, reader) pairs one thread runs, with the thread's metrics and allocation context:
 * a dedicated reader thread's own, or a vCPU worker's when the readers share the vCPUs' CPUs.
 */
export class UffdReaders {
  private readonly hosted: Hosted[];
  private readonly got: Int32Array;
  private readonly queuedAt: Float64Array;
  private readonly nap = new Int32Array(new SharedArrayBuffer(4));

  constructor(private readonly ht: HostThread, private readonly m: Metrics, private readonly hist: OpHistograms, work: UffdReaderWork[], private readonly o: UffdReaderOptions) {
    this.hosted = work.map((w) => ({
      uffd: new Userfaultfd(w.uffd), mode: w.mode, readers: w.readers, vmas: w.vmas.map((h) => new Vma(h)),
      stats: Array.from({ length: w.readers }, (_, k) => ({ uffd: w.uffd.id, reader: w.firstReader + k * w.readerStride, pages: 0, eexist: 0, woken: 0, modeledNs: 0 })),
    }));
    this.got = new Int32Array(Math.max(1, ...this.hosted.map((h) => h.readers)));
    this.queuedAt = new Float64Array(this.got.length);
  }

  get empty(): boolean {
    return this.hosted.length === 0;
  }

  /**
   * One pass: the readers of each uffd each read one message (racing for the fd as threads do,
   * so two messages for one page can be in two readers' hands), then each handles its own.
   * Returns the messages handled.
   */
  pass(): number {
    let handled = 0;
    const got = this.got;
    const queuedAt = this.queuedAt;
    for (const h of this.hosted) {
      let k = 0;
      while (k < h.readers) {
        const waiter = h.uffd.read();
        if (waiter < 0) break;
        // Read before the resolution: once woken, the vCPU may queue its next fault here.
        queuedAt[k] = h.uffd.waiterQueuedAt(waiter);
        got[k++] = waiter;
      }
      for (let j = 0; j < k; j++) this.resolve(h, got[j]!, queuedAt[j]!, h.stats[j]!);
      handled += k;
    }
    return handled;
  }

  /** Passes until one finds nothing; returns the messages handled. */
  drain(): number {
    let n = 0;
    for (let k = this.pass(); k > 0; k = this.pass()) n += k;
    return n;
  }

  /** EPOLLIN on any hosted uffd. */
  readable(): boolean {
    for (const h of this.hosted) if (h.uffd.readable()) return true;
    return false;
  }

  stats(): UffdReaderStats[] {
    return this.hosted.flatMap((h) => h.stats);
  }

  /** handle_uffd_page_request() for one message, after the reader's usleep(-d). */
  private resolve(h: Hosted, waiter: number, queued: number, st: UffdReaderStats): void {
    const m = this.m;
    const o = this.o;
    const tm = m.t;
    count(m, Op.uffd_read);
    if (o.delayNs > 0) {
      countN(m, Op.uffd_delay_ns, o.delayNs);
      if (o.realDelay) Atomics.wait(this.nap, 0, 0, o.delayNs / 1e6);
    }
    const vma = h.vmas[h.uffd.waiterVma(waiter)]!;
    const idx = h.uffd.waiterIdx(waiter);
    // demand_paging_size bytes at the (granule-aligned) fault address, within its registered range.
    const range = uffdRangeOf(vma.uffd!, idx)!;
    const n = Math.min(o.resolvePages, range.end - idx);
    const minor = h.mode === UffdMode.MINOR;
    const cost = o.cost;
    // What the resolution costs if the ioctl succeeds, recorded before it maps (setResolveNs()).
    // The same value goes to the wake: the sleeper and a thread that saw the mapping first are
    // charged identically (a partial copy, only with duplicate messages, is still priced whole).
    const granules = Math.ceil(n / 2 ** vma.granuleOrder);
    const resolveNs = m.t - tm + (minor ? cost[Op.uffd_continue]! : cost[Op.uffd_copy]! + granules * cost[Op.frame_alloc]! + n * cost[Op.page_copy_4k]!);
    h.uffd.setResolveNs(waiter, resolveNs);
    const r = minor ? mfillAtomicContinue(this.ht, vma, idx, n) : mfillAtomicCopy(this.ht, vma, idx, n);
    count(m, minor ? Op.uffd_continue : Op.uffd_copy);
    if (r === kEEXIST) {
      // Another reader resolved the page first; its wake woke this message's vCPU too.
      count(m, Op.uffd_eexist);
      st.eexist++;
      st.modeledNs += m.t - tm;
      return;
    }
    if (r < 0) throw new Error(`UFFDIO_${minor ? 'CONTINUE' : 'COPY'} of ${n} pages at page ${idx} of ${vma.backing} mapping ${vma.id} failed with errno ${-r}`);
    if (!minor) {
      countN(m, Op.frame_alloc, r >>> vma.granuleOrder);
      countN(m, Op.page_copy_4k, r);
    }
    const woken = h.uffd.wake(vma.id, idx, idx + r, resolveNs);
    // One wake_userfault() per resolution, whoever it found: a thread that saw the mapping
    // before it slept took itself off the queue, and that race must not move modeled time.
    count(m, Op.uffd_wake);
    countN(m, Op.uffd_wake_scan, h.uffd.lastScanned);
    st.woken += woken;
    // Wall latency for the sampled faults (the vCPU stamped when it queued), modeled for all.
    if (queued > 0) this.hist.record(Math.max(1, Math.round((performance.timeOrigin + performance.now() - queued) * 1e6)), resolveNs);
    else this.hist.recordModeled(resolveNs);
    st.pages++;
    st.modeledNs += m.t - tm;
  }
}

/** A dedicated reader thread: serve until uffd_stop_demand_paging() (the stop flag) and nothing is left. */
export function runUffdReaderTask(task: UffdReaderTask): UffdReaderResult {
  const t0 = performance.now();
  const host = Host.attach(task.host);
  const ht = host.thread();
  const m = new Metrics(task.cost);
  const hists = new HistogramSet();
  const rb = new Int32Array(task.readerBoard);
  try {
    const readers = new UffdReaders(ht, m, hists.get(task.histogram), task.work, task);
    for (;;) {
      if (readers.drain() > 0) continue;
      if (Atomics.load(rb, BoardLayout.kStop) !== 0) break;
      const seq = boardPrepareSleep(rb, task.slot);
      if (readers.readable()) {
        boardCancelSleep(rb, task.slot);
        continue;
      }
      boardSleep(rb, task.slot, seq, 50);
    }
    ht.drain();
    return {
      slot: task.slot, threadId, wallNs: (performance.now() - t0) * 1e6, counters: m.c.slice(),
      readers: readers.stats(), histograms: hists.encode(),
    };
  } finally {
    ht.drain();
    hists.destroy();
  }
}
