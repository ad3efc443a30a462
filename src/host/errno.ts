/**
 * Errors as the kernel reports them: an errno name and a sentence the user can act on.
 * Defined at the host layer (the lowest one that can fail on bad input) so every layer
 * above throws the same type; the KVM layer re-exports it as its ioctl error.
 */
export type Errno = 'EINVAL' | 'EEXIST' | 'ENOENT' | 'ENOMEM' | 'EFAULT' | 'EBUSY' | 'ENXIO' | 'E2BIG' | 'EPERM' | 'ENOSPC' | 'EAGAIN' | 'ENODEV' | 'ENOTTY' | 'EOPNOTSUPP';

const kErrnoNumbers: Record<Errno, number> = {
  EPERM: 1, ENOENT: 2, ENXIO: 6, E2BIG: 7, EAGAIN: 11, ENOMEM: 12, EFAULT: 14, EBUSY: 16, EEXIST: 17,
  EINVAL: 22, ENOSPC: 28, ENODEV: 19, ENOTTY: 25, EOPNOTSUPP: 95,
};

export class KvmError extends Error {
  readonly errno: Errno;
  readonly code: number;
  constructor(errno: Errno, message: string) {
    super(`${errno}: ${message}`);
    this.name = 'KvmError';
    this.errno = errno;
    this.code = -kErrnoNumbers[errno];
  }
}

export function fail(errno: Errno, message: string): never {
  throw new KvmError(errno, message);
}
