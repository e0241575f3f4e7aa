"""Nemeses: each injects one fault into a ChaosCluster, holds it, and undoes it. The runner then waits
for the cluster to heal (chaos.py). Every fault is logged as events (JSON lines, CLOCK_MONOTONIC times)
so that the checker can attribute what it finds and run the timing proofs.

Catalogue (name: what; how long):
  partition-primary   the leader's host cut off from the other hosts (etcd and peers); clients still
                      reach it. Timed: the lease renewal is observed first (timing proof). ttl + 3..8 s.
  partition-half      a random minority (1 of 3 hosts) cut off from the rest. 0.5..2 x ttl.
  partition-ring      a non-transitive partition: one link cut (with 3 hosts every node still sees a
                      majority, but not the same one: the majority ring of 3). 1..2.5 x ttl.
  kill-agent          kill -9 of the agent (its PostgreSQL keeps running); restarted after 0.5..ttl/2 s
                      (a supervisor's restart).
  kill-postmaster     kill -9 of the postmaster (the agent restarts it).
  kill-both           kill -9 of agent and postmaster; the agent is restarted after 1..2 x ttl s.
  stop-agent          SIGSTOP of the agent for 1..ttl/2 s, then SIGCONT.
  stop-etcd-one       SIGSTOP of one etcd member (the raft leader half of the time) for 2..ttl+5 s.
  stop-etcd-majority  SIGSTOP of two etcd members for ttl + 2..6 s.
  stop-etcd-all       SIGSTOP of every etcd member for ttl + 3..6 s. Timed (timing proof).
  switchover          POST /switchover to the leader (candidate: a synchronous standby in a synchronous
                      mode, else any replica).
  failover            POST /failover with a candidate (same choice), sent to the candidate.
Opt-in (--unfenced): known to be unsafe without a watchdog (Patroni has the same exposure), so not in
the default set:
  stop-agent-long     SIGSTOP of the leader's agent for ttl + 5..10 s: its PostgreSQL stays a writable
                      primary while another node is promoted.
  kill-agent-long     kill -9 of the leader's agent, restarted after ttl + 5..10 s: likewise.
A slowed disk is not implemented: this kernel has no device mapper (no dm-delay) and no netem.
"""

import time

import pghatest as h

DEFAULT = ["partition-primary", "partition-half", "partition-ring", "kill-agent", "kill-postmaster", "kill-both",
           "stop-agent", "stop-etcd-one", "stop-etcd-majority", "stop-etcd-all", "switchover", "failover"]
UNFENCED = ["stop-agent-long", "kill-agent-long"]


class Nemesis:
    def __init__(self, cluster, net, rng, events, log):
        self.c, self.net, self.rng, self.events, self.log = cluster, net, rng, events, log
        self.ttl, self.loop_wait = cluster.ttl, cluster.loop_wait
        self.mode = "off"

    # ------------------------------------------------------------------ helpers
    def leader(self):
        return h.wait_until(lambda: self.c.leader(), 30, interval=0.2, msg="a leader")

    def replicas(self, leader):
        return [x for x in self.c.hosts if x != leader]

    def target(self, leader, p_leader=0.67):
        return leader if self.rng.random() < p_leader else self.rng.choice(self.replicas(leader))

    def hold(self, seconds):
        time.sleep(max(0.0, seconds))

    def candidate(self, leader):
        """A replica that may be promoted: in a synchronous mode one named in /sync."""
        reps = self.replicas(leader)
        if self.mode != "off":
            sync = self.c.value("sync") or {}
            names = [x for x in str(sync.get("sync_standby") or "").split(",") if x in reps]
            if names:
                return self.rng.choice(names)
        return self.rng.choice(reps)

    def observe_renewal(self, leader, exclude=()):
        """Watch the leader's lease until etcd shows a renewal (the remaining TTL goes up between two
        polls). Returns the send time of the poll before the jump (a lower bound of that renewal, the
        last one before we act), or None if none was seen within 3 x loop_wait + 2 s."""
        try:
            kv = self.c.get_kv("leader", exclude=exclude)
        except Exception as e:  # noqa: BLE001
            self.log(f"observe_renewal: {e}")
            return None, None
        if not kv or kv["value"] != leader or "lease" not in kv:
            return None, None
        lease = kv["lease"]
        deadline = time.monotonic() + 3 * self.loop_wait + 2
        prev = None
        while time.monotonic() < deadline:
            s = time.monotonic()
            try:
                ttl = self.c.lease_ttl(lease, exclude=exclude, timeout=0.5)
            except Exception:  # noqa: BLE001
                ttl = None
            if ttl is not None and prev is not None and prev[1] is not None and ttl > prev[1]:
                return prev[0], lease
            prev = (s, ttl)
            time.sleep(0.03)
        return None, lease

    # ------------------------------------------------------------------ faults
    def run(self, name, fid):
        """Inject fault `name`; returns a detail dict (what was done). The fault is undone on return
        (even when an exception escapes)."""
        return getattr(self, "n_" + name.replace("-", "_"))(fid)

    def _timing(self, fid, name, leader, renewal_lb, cut, heal, lease):
        self.events.write("timing", id=fid, nemesis=name, leader=leader, renewal_lb=renewal_lb, cut=cut, heal=heal,
                          lease=lease)

    def n_partition_primary(self, fid):
        leader = self.leader()
        others = self.replicas(leader)
        renewal_lb, lease = self.observe_renewal(leader, exclude=[leader])
        try:
            cut = self.net.partition([[leader], others], first=leader)  # the leader's own rules first
            hold = self.ttl + self.rng.uniform(3, 8)
            self.hold(hold)
        finally:
            heal = time.monotonic()
            self.net.heal()
        self._timing(fid, "partition-primary", leader, renewal_lb, cut, heal, lease)
        return {"leader": leader, "isolated": [leader], "hold": round(hold, 2), "renewal_seen": renewal_lb is not None}

    def n_partition_half(self, fid):
        hosts = list(self.c.hosts)
        self.rng.shuffle(hosts)
        k = len(hosts) // 2
        groups = [hosts[:k], hosts[k:]]
        hold = self.rng.uniform(0.5, 2.0) * self.ttl
        try:
            self.net.partition(groups)
            self.hold(hold)
        finally:
            self.net.heal()
        return {"leader": self.c.leader(), "groups": groups, "hold": round(hold, 2)}

    def n_partition_ring(self, fid):
        leader = self.leader()
        if self.rng.random() < 0.67:
            pair = [leader, self.rng.choice(self.replicas(leader))]
        else:
            pair = self.replicas(leader)
        hold = self.rng.uniform(1.0, 2.5) * self.ttl
        try:
            self.net.cut_links([tuple(pair)])
            self.hold(hold)
        finally:
            self.net.heal()
        return {"leader": leader, "cut": pair, "hold": round(hold, 2)}

    def _kill_agent(self, fid, down, target):
        node = self.c.nodes[target]
        try:
            node.kill9(postmaster=False)
            self.hold(down)
        finally:
            node.start()
        return {"target": target, "down": round(down, 2)}

    def n_kill_agent(self, fid):
        leader = self.leader()
        d = self._kill_agent(fid, self.rng.uniform(0.5, self.ttl / 2), self.target(leader))
        return dict(d, leader=leader)

    def n_kill_agent_long(self, fid):
        leader = self.leader()
        return dict(self._kill_agent(fid, self.ttl + self.rng.uniform(5, 10), leader), leader=leader)

    def n_kill_postmaster(self, fid):
        leader = self.leader()
        target = self.target(leader)
        pid = self.c.nodes[target].kill_postmaster()
        self.hold(self.rng.uniform(1, 3))
        return {"leader": leader, "target": target, "postmaster": pid}

    def n_kill_both(self, fid):
        leader = self.leader()
        target = self.target(leader)
        node = self.c.nodes[target]
        down = self.rng.uniform(1, 2 * self.ttl)
        try:
            node.kill9(postmaster=True)
            self.hold(down)
        finally:
            node.start()
        return {"leader": leader, "target": target, "down": round(down, 2)}

    def _stop_agent(self, fid, hold, target):
        node = self.c.nodes[target]
        try:
            node.pause()
            self.hold(hold)
        finally:
            node.resume()
        return {"target": target, "hold": round(hold, 2)}

    def n_stop_agent(self, fid):
        leader = self.leader()
        return dict(self._stop_agent(fid, self.rng.uniform(1, self.ttl / 2), self.target(leader)), leader=leader)

    def n_stop_agent_long(self, fid):
        leader = self.leader()
        return dict(self._stop_agent(fid, self.ttl + self.rng.uniform(5, 10), leader), leader=leader)

    def _etcd_leader_host(self):
        for hh, m in self.c.etcd.items():
            try:
                st = m.call("maintenance/status", {}, timeout=1.0)
                if st.get("leader") == st.get("header", {}).get("member_id"):
                    return hh
            except Exception:  # noqa: BLE001
                pass
        return None

    def _stop_etcd(self, members, hold):
        try:
            for hh in members:
                self.c.etcd[hh].pause()
            t = time.monotonic()
            self.hold(hold)
        finally:
            for hh in members:
                self.c.etcd[hh].resume()
        return t

    def n_stop_etcd_one(self, fid):
        eleader = self._etcd_leader_host()
        m = eleader if (eleader and self.rng.random() < 0.5) else self.rng.choice(self.c.hosts)
        hold = self.rng.uniform(2, self.ttl + 5)
        self._stop_etcd([m], hold)
        return {"leader": self.c.leader(), "members": [m], "etcd_leader": eleader, "hold": round(hold, 2)}

    def n_stop_etcd_majority(self, fid):
        ms = self.rng.sample(self.c.hosts, 2)
        hold = self.ttl + self.rng.uniform(2, 6)
        leader = self.c.leader()
        self._stop_etcd(ms, hold)
        return {"leader": leader, "members": ms, "hold": round(hold, 2)}

    def n_stop_etcd_all(self, fid):
        leader = self.leader()
        renewal_lb, lease = self.observe_renewal(leader)
        hold = self.ttl + self.rng.uniform(3, 6)
        cut = None
        try:
            for m in self.c.etcd.values():
                m.pause()
            cut = time.monotonic()
            self.hold(hold)
        finally:
            heal = time.monotonic()
            for m in self.c.etcd.values():
                m.resume()
        self._timing(fid, "stop-etcd-all", leader, renewal_lb, cut, heal, lease)
        return {"leader": leader, "hold": round(hold, 2), "renewal_seen": renewal_lb is not None}

    def _wait_new_leader(self, old, timeout=40):
        try:
            return h.wait_until(lambda: (lambda l: l if l and l != old else None)(self.c.leader()), timeout,
                                interval=0.2, msg="a new leader")
        except h.WaitTimeout:
            return None

    def n_switchover(self, fid):
        leader = self.leader()
        cand = self.candidate(leader)
        try:
            r = self.c.rest(leader, "POST", "/switchover", {"leader": leader, "candidate": cand}, timeout=40)
            status, text = r.status_code, r.text.strip()[:300]
        except Exception as e:  # noqa: BLE001
            status, text = None, str(e)[:300]
        new = self._wait_new_leader(leader) if status == 200 else self.c.leader()
        return {"leader": leader, "candidate": cand, "status": status, "answer": text, "new_leader": new}

    def n_failover(self, fid):
        leader = self.leader()
        cand = self.candidate(leader)
        try:
            r = self.c.rest(cand, "POST", "/failover", {"candidate": cand}, timeout=40)
            status, text = r.status_code, r.text.strip()[:300]
        except Exception as e:  # noqa: BLE001
            status, text = None, str(e)[:300]
        new = self._wait_new_leader(leader) if status == 200 else self.c.leader()
        return {"leader": leader, "candidate": cand, "status": status, "answer": text, "new_leader": new}
