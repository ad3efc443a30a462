/**
 * The library's entry point, shaped like /dev/kvm: `Host.create()` builds the emulated machine
 * and `host.createVm()` is KVM_CREATE_VM. It owns the calling thread's context (counters, frame
 * caches) for VMM-side calls; scenarios that shard vCPUs over workers use the Runner instead.
 */
import { Host as PhysHost, type HostOptions } from '../host/host.js';
import { Metrics } from '../metrics/counters.js';
import { costVector, loadCostModel } from '../metrics/cost-model.js';
import { Vm, type ThreadCtx, type VmOptions } from './vm.js';
import { audit, type AuditResult } from './audit.js';
import { type Cap, kvmCheckExtension } from './caps.js';

export interface KvmHostOptions extends HostOptions {
  /** Cost-model profile for modeled time (name or path). Default 'default'. */
  costModel?: string;
}

export class KvmHost {
  readonly ctx: ThreadCtx;
  readonly vms: Vm[] = [];
  private constructor(readonly phys: PhysHost, cost: Float64Array) {
    this.ctx = { metrics: new Metrics(cost), hostThread: phys.thread() };
  }

  static create(opts: KvmHostOptions): KvmHost {
    return new KvmHost(PhysHost.create(opts), costVector(loadCostModel(opts.costModel)));
  }

  /** KVM_CREATE_VM */
  createVm(opts: VmOptions = {}): Vm {
    const vm = Vm.create(this.phys, this.vms.length, this.ctx, opts);
    this.vms.push(vm);
    return vm;
  }

  /** KVM_CHECK_EXTENSION on /dev/kvm (the system ioctl: no VM). */
  checkExtension(cap: Cap): number {
    return kvmCheckExtension(this.phys, null, cap);
  }

  /** Publish this thread's cached frames and accounting (call before audit()). */
  drain(): void {
    this.ctx.hostThread.drain();
  }

  audit(): AuditResult {
    this.drain();
    return audit(this.phys, this.vms);
  }

  accounting() {
    return this.phys.accounting();
  }
}
