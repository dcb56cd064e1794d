import { describe, expect, it } from 'vitest';
import { homeFiles, type CgroupTarget } from '../../../src/sandbox/cgroups/cgroup-self-move.js';

// Where the spawner moves back to after a spawn in a sandbox's cgroups: its
// own place in each hierarchy the sandbox's join writes to.
describe('homeFiles', () => {
  const v1: CgroupTarget = {
    files: ['/sys/fs/cgroup/memory/sr/a/tasks', '/sys/fs/cgroup/pids/sr/a/tasks', '/sys/fs/cgroup/cpu/sr/a/tasks'],
    write: 'current-thread',
    controllers: ['memory', 'pids', 'cpu'],
    mountRoot: '/sys/fs/cgroup',
  };

  it('v1: each controller’s own folder, also where controllers share a hierarchy, never the unified line', () => {
    const self = ['12:pids:/system.slice/runner.service', '4:memory:/runner', '3:cpu,cpuacct:/', '0::/user.slice', ''].join('\n');
    expect(homeFiles(v1, self)).toEqual([
      '/sys/fs/cgroup/memory/runner/tasks',
      '/sys/fs/cgroup/pids/system.slice/runner.service/tasks',
      '/sys/fs/cgroup/cpu/tasks',
    ]);
  });

  it('v2: the unified hierarchy’s cgroup.procs', () => {
    const v2: CgroupTarget = { files: ['/sys/fs/cgroup/sr/a/cgroup.procs'], write: 'pid', controllers: [''], mountRoot: '/sys/fs/cgroup' };
    expect(homeFiles(v2, '0::/system.slice/runner.service\n')).toEqual(['/sys/fs/cgroup/system.slice/runner.service/cgroup.procs']);
  });

  it('undefined when a hierarchy of the target is not listed (then the spawner uses the wrapper)', () => {
    expect(homeFiles(v1, '4:memory:/runner\n0::/\n')).toBeUndefined();
  });
});
