// SPDX-License-Identifier: GPL-2.0
/* Per-process network traffic counters, aggregated in the kernel.
 *
 * Hook sets (user space loads one, best first, and reports which):
 *   "fexit":   fexit on tcp_sendmsg/tcp_recvmsg/udp_sendmsg/udp_recvmsg/udpv6_sendmsg/udpv6_recvmsg.
 *              Peers of unconnected UDP come from msghdr->msg_name.
 *   "tracepoint": tp_btf/sock_send_length + tp_btf/sock_recv_length (one call per send/recv, in the
 *              caller's context, with the socket and the byte count), plus cgroup sendmsg4/6 and
 *              recvmsg4/6 hooks on the cgroup v2 root that learn the peer of unconnected UDP sockets
 *              (the hook runs on the same thread just before the length tracepoint).
 * Both sets add tp_btf/inet_sock_set_state for TCP connection lifecycle (connect, accept, close).
 *
 * Cost: one LRU hash lookup and a few atomic adds per send or receive; lifecycle and new-process
 * records (rare) go through a ring buffer. Traffic is counted into one of two LRU maps; user space
 * flips `control.active`, forces an RCU grace period (an update of the map-of-maps waits for one), then
 * drains the idle map with batch lookup-and-delete: every count is drained exactly once, and inserts
 * minus drained keys gives the exact number of LRU evictions.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "netflow.h"

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define EEXIST 17

#define DIR_SEND 0
#define DIR_RECV 1

char LICENSE[] SEC("license") = "GPL";

struct flow_map {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* user space sets the size before load */
	__type(key, struct pnf_flow_key);
	__type(value, struct pnf_flow_value);
} flows_0 SEC(".maps"), flows_1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct flow_map);
} flow_buffers SEC(".maps") = {
	.values = { &flows_0, &flows_1 },
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pnf_control);
} control SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PNF_C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct udp_peer {
	__u64 cookie; /* the socket the peer belongs to */
	__u16 family;
	__u16 port;   /* host byte order */
	__u32 pad;
	__u8 addr[16];
};

/* Peer of the last unconnected UDP send/recv, per thread; picked up by the length tracepoint. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct udp_peer);
} udp_peers SEC(".maps");

/* Processes already reported to user space: tgid -> start_boottime. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} seen_processes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* user space sets the size before load */
} records SEC(".maps");

static __always_inline void count(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &index);

	if (value)
		*value += 1; /* per-CPU: no atomic needed */
}

/* Direct loads through the BTF-typed socket pointer (tp_btf and fexit programs): the verifier turns
 * them into guarded loads, far cheaper than a bpf_probe_read_kernel() call each. */
static __always_inline void copy_addr(__u8 *dst, const struct sock *sk, __u16 family, bool remote)
{
	if (family == AF_INET) {
		__u32 addr = remote ? sk->__sk_common.skc_daddr : sk->__sk_common.skc_rcv_saddr;
		__builtin_memcpy(dst, &addr, 4);
	} else {
		const struct in6_addr *addr = remote ? &sk->__sk_common.skc_v6_daddr
						     : &sk->__sk_common.skc_v6_rcv_saddr;
		__u64 *words = (__u64 *)dst;

		words[0] = *(const __u64 *)&addr->in6_u.u6_addr32[0];
		words[1] = *(const __u64 *)&addr->in6_u.u6_addr32[2];
	}
}

/* The same with probe reads, for programs whose socket pointer is not BTF-typed. */
static __always_inline void copy_addr_probe(__u8 *dst, const struct sock *sk, __u16 family, bool remote)
{
	if (family == AF_INET) {
		__u32 addr = remote ? BPF_CORE_READ(sk, __sk_common.skc_daddr)
				    : BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__builtin_memcpy(dst, &addr, 4);
	} else {
		struct in6_addr addr = remote ? BPF_CORE_READ(sk, __sk_common.skc_v6_daddr)
					      : BPF_CORE_READ(sk, __sk_common.skc_v6_rcv_saddr);
		__builtin_memcpy(dst, &addr, 16);
	}
}

static __always_inline bool is_loopback(const __u8 *addr, __u16 family)
{
	if (family == AF_INET)
		return addr[0] == 127;
	/* ::1 */
	if (((__u64 *)addr)[0] == 0 && ((__u32 *)addr)[2] == 0 && ((__u32 *)addr)[3] == bpf_htonl(1))
		return true;
	/* ::ffff:127.0.0.0/104 */
	return ((__u64 *)addr)[0] == 0 && ((__u32 *)addr)[2] == bpf_htonl(0xffff) && addr[12] == 127;
}

static __always_inline void report_process(struct task_struct *task, __u32 tgid, __u32 uid, __u64 now)
{
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	__u64 start = BPF_CORE_READ(leader, start_boottime);
	__u64 *seen = bpf_map_lookup_elem(&seen_processes, &tgid);

	if (seen && *seen == start)
		return;
	bpf_map_update_elem(&seen_processes, &tgid, &start, BPF_ANY);

	struct pnf_process *rec = bpf_ringbuf_reserve(&records, sizeof(*rec), 0);
	if (!rec) {
		count(PNF_C_RINGBUF_LOST);
		/* forget it, so the next traffic of this process tries again */
		bpf_map_delete_elem(&seen_processes, &tgid);
		return;
	}
	rec->hdr.kind = PNF_RECORD_PROCESS;
	rec->hdr.size = sizeof(*rec);
	rec->ts_ns = now;
	rec->start_ns = start;
	rec->tgid = tgid;
	rec->ppid = BPF_CORE_READ(leader, real_parent, tgid);
	rec->uid = uid;
	rec->depth = 0;
	__builtin_memset(rec->pad, 0, sizeof(rec->pad));
	BPF_CORE_READ_STR_INTO(&rec->comm, leader, comm);

	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	if (!exe) {
		rec->dev = 0;
		rec->ino = 0;
		rec->mtime_sec = 0;
		rec->size = 0;
		bpf_ringbuf_submit(rec, 0);
		return;
	}
	struct inode *inode = BPF_CORE_READ(exe, f_inode);
	rec->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	rec->ino = BPF_CORE_READ(inode, i_ino);
	rec->size = BPF_CORE_READ(inode, i_size);
	if (bpf_core_field_exists(inode->i_mtime_sec))
		rec->mtime_sec = BPF_CORE_READ(inode, i_mtime_sec);
	else
		rec->mtime_sec = 0; /* older kernels: user space then matches on dev, inode and size */

	struct dentry *dentry = BPF_CORE_READ(exe, f_path.dentry);
#pragma unroll
	for (int i = 0; i < PNF_PATH_DEPTH; i++) {
		const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
		struct dentry *parent = BPF_CORE_READ(dentry, d_parent);

		bpf_probe_read_kernel_str(rec->names[i], PNF_NAME_LEN, name);
		rec->depth = i + 1;
		if (!parent || parent == dentry)
			break;
		dentry = parent;
	}
	/* wake user space at once: it reads /proc while the process still lives */
	bpf_ringbuf_submit(rec, 0);
}

static __always_inline void add_to_flow(void *flows, __u32 inserts, struct pnf_flow_key *key, long bytes,
					int dir, struct task_struct *task)
{
	/* The clock is read only when an entry is created: bpf_ktime_get_ns() measured about 100 ns per
	 * call on a KVM guest (a third of the program), bpf_jiffies64() a few ns. Later calls only note
	 * the tick; user space turns ticks into time (to a tick's resolution). */
	__u64 tick = bpf_jiffies64();
	struct pnf_flow_value *value = bpf_map_lookup_elem(flows, key);

	if (!value) {
		struct pnf_flow_value init = {};
		__u64 now = bpf_ktime_get_ns();

		init.first_ns = now;
		init.first_jiffies = tick;
		init.last_jiffies = tick;
		if (dir == DIR_SEND) {
			init.bytes_sent = bytes;
			init.sends = 1;
			init.first_dir = DIR_SEND;
		} else {
			init.bytes_received = bytes;
			init.receives = 1;
			init.first_dir = DIR_RECV;
		}
		long err = bpf_map_update_elem(flows, key, &init, BPF_NOEXIST);
		if (err == 0) {
			count(inserts);
			report_process(task, key->tgid, key->uid, now);
			return;
		}
		if (err != -EEXIST) {
			count(PNF_C_UPDATE_FAILED);
			return;
		}
		/* another CPU inserted the same key first: add to its entry */
		value = bpf_map_lookup_elem(flows, key);
		if (!value) {
			count(PNF_C_UPDATE_FAILED);
			return;
		}
	}
	if (dir == DIR_SEND) {
		__sync_fetch_and_add(&value->bytes_sent, bytes);
		__sync_fetch_and_add(&value->sends, 1);
	} else {
		__sync_fetch_and_add(&value->bytes_received, bytes);
		__sync_fetch_and_add(&value->receives, 1);
	}
	value->last_jiffies = tick;
}

/* Count one send or receive of `bytes` on `sk` by the current task. `peer`, when set, is the
 * destination/source of an unconnected UDP datagram. */
static __always_inline void count_traffic(struct sock *sk, long bytes, int dir, const struct udp_peer *peer)
{
	if (bytes <= 0 || !sk)
		return;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return;
	__u16 type = sk->sk_type;
	__u8 protocol = sk->sk_protocol;
	if (!((type == SOCK_STREAM && protocol == IPPROTO_TCP) || (type == SOCK_DGRAM && protocol == IPPROTO_UDP)))
		return;

	__u32 zero = 0;
	struct pnf_control *ctl = bpf_map_lookup_elem(&control, &zero);
	if (!ctl)
		return;

	/* Loads through the task pointer instead of bpf_get_current_pid_tgid()/_uid_gid(): on hosts
	 * with return-thunk mitigations (AMD SRSO, retbleed) every helper call costs 25-50 ns, and these
	 * two were a quarter of the program (docs/benchmarks.md). cred->uid is the uid as the initial
	 * user namespace sees it, as bpf_get_current_uid_gid() returns. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct pnf_flow_key key = {};
	__u32 tid = task->pid;
	key.tgid = task->tgid;
	key.uid = task->cred->uid.val;
	key.family = family;
	key.protocol = protocol;
	key.lport = sk->__sk_common.skc_num;
	key.rport = bpf_ntohs(sk->__sk_common.skc_dport);
	copy_addr(key.laddr, sk, family, false);
	if (key.rport == 0 && protocol == IPPROTO_UDP) {
		struct udp_peer *learnt = 0;

		if (!peer) {
			learnt = bpf_map_lookup_elem(&udp_peers, &tid);
			if (learnt && learnt->cookie == bpf_get_socket_cookie(sk))
				peer = learnt;
		}
		if (peer) {
			key.rport = peer->port;
			__builtin_memcpy(key.raddr, peer->addr, 16);
		} else {
			count(PNF_C_UDP_NO_PEER);
		}
		if (learnt)
			bpf_map_delete_elem(&udp_peers, &tid);
	} else {
		copy_addr(key.raddr, sk, family, true);
	}
	if (ctl->exclude_loopback && is_loopback(key.raddr, family))
		return;

	struct task_struct *leader = task->group_leader;
	__u64 *comm = (__u64 *)key.comm;
	comm[0] = *(__u64 *)&leader->comm[0];
	comm[1] = *(__u64 *)&leader->comm[8];

	count(PNF_C_EVENTS);
	/* Two copies of the update, one per buffer, so that each refers to its map directly: the
	 * verifier then calls the LRU map's lookup directly instead of through the map's ops table
	 * (an indirect call, costly with retpolines), as it must for a map taken from a map-of-maps. */
	if (ctl->active & 1)
		add_to_flow(&flows_1, PNF_C_INSERTS_1, &key, bytes, dir, task);
	else
		add_to_flow(&flows_0, PNF_C_INSERTS_0, &key, bytes, dir, task);
}

/* ---- hook set "tracepoint" ------------------------------------------------------------------ */

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send_length, struct sock *sk, int ret, int flags)
{
	count_traffic(sk, ret, DIR_SEND, 0);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_recv_length, struct sock *sk, int ret, int flags)
{
	count_traffic(sk, ret, DIR_RECV, 0);
	return 0;
}

static __always_inline int remember_peer(struct bpf_sock_addr *ctx, bool v6)
{
	if (ctx->protocol != IPPROTO_UDP)
		return 1;
	struct udp_peer peer = {};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	peer.cookie = bpf_get_socket_cookie(ctx);
	peer.port = bpf_ntohs((__u16)ctx->user_port);
	if (v6) {
		peer.family = AF_INET6;
		__u32 *words = (__u32 *)peer.addr;
		words[0] = ctx->user_ip6[0];
		words[1] = ctx->user_ip6[1];
		words[2] = ctx->user_ip6[2];
		words[3] = ctx->user_ip6[3];
	} else {
		peer.family = AF_INET;
		__u32 addr = ctx->user_ip4;
		__builtin_memcpy(peer.addr, &addr, 4);
	}
	bpf_map_update_elem(&udp_peers, &tid, &peer, BPF_ANY);
	return 1; /* never block or rewrite anything */
}

SEC("cgroup/sendmsg4")
int udp_sendmsg4(struct bpf_sock_addr *ctx) { return remember_peer(ctx, false); }

SEC("cgroup/sendmsg6")
int udp_sendmsg6(struct bpf_sock_addr *ctx) { return remember_peer(ctx, true); }

SEC("cgroup/recvmsg4")
int udp_recvmsg4(struct bpf_sock_addr *ctx) { return remember_peer(ctx, false); }

SEC("cgroup/recvmsg6")
int udp_recvmsg6(struct bpf_sock_addr *ctx) { return remember_peer(ctx, true); }

/* ---- hook set "fexit" (preferred where the kernel allows tracing programs) -------------------- */

/* The peer of an unconnected UDP datagram from msg->msg_name (a kernel copy of the sockaddr on
 * both the send and the receive path). */
static __always_inline bool peer_from_msg(struct msghdr *msg, struct udp_peer *peer)
{
	void *name = BPF_CORE_READ(msg, msg_name);
	int namelen = BPF_CORE_READ(msg, msg_namelen);
	__u16 family = 0;

	if (!name || namelen < (int)sizeof(struct sockaddr_in))
		return false;
	bpf_probe_read_kernel(&family, sizeof(family), name);
	if (family == AF_INET) {
		struct sockaddr_in sin = {};

		bpf_probe_read_kernel(&sin, sizeof(sin), name);
		peer->family = AF_INET;
		peer->port = bpf_ntohs(sin.sin_port);
		__builtin_memcpy(peer->addr, &sin.sin_addr.s_addr, 4);
		return true;
	}
	if (family == AF_INET6 && namelen >= (int)sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 sin6 = {};

		bpf_probe_read_kernel(&sin6, sizeof(sin6), name);
		peer->family = AF_INET6;
		peer->port = bpf_ntohs(sin6.sin6_port);
		__builtin_memcpy(peer->addr, &sin6.sin6_addr, 16);
		return true;
	}
	return false;
}

static __always_inline long func_ret(void *ctx)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	return (long)(int)ret; /* the functions return int */
}

SEC("fexit/tcp_sendmsg")
int BPF_PROG(fexit_tcp_sendmsg, struct sock *sk)
{
	count_traffic(sk, func_ret(ctx), DIR_SEND, 0);
	return 0;
}

SEC("fexit/tcp_recvmsg")
int BPF_PROG(fexit_tcp_recvmsg, struct sock *sk)
{
	count_traffic(sk, func_ret(ctx), DIR_RECV, 0);
	return 0;
}

static __always_inline int fexit_udp(void *ctx, struct sock *sk, struct msghdr *msg, int dir)
{
	long ret = func_ret(ctx);
	struct udp_peer peer = {};

	if (ret <= 0)
		return 0;
	if (peer_from_msg(msg, &peer))
		count_traffic(sk, ret, dir, &peer);
	else
		count_traffic(sk, ret, dir, 0);
	return 0;
}

SEC("fexit/udp_sendmsg")
int BPF_PROG(fexit_udp_sendmsg, struct sock *sk, struct msghdr *msg)
{
	return fexit_udp(ctx, sk, msg, DIR_SEND);
}

SEC("fexit/udp_recvmsg")
int BPF_PROG(fexit_udp_recvmsg, struct sock *sk, struct msghdr *msg)
{
	return fexit_udp(ctx, sk, msg, DIR_RECV);
}

SEC("fexit/udpv6_sendmsg")
int BPF_PROG(fexit_udpv6_sendmsg, struct sock *sk, struct msghdr *msg)
{
	return fexit_udp(ctx, sk, msg, DIR_SEND);
}

SEC("fexit/udpv6_recvmsg")
int BPF_PROG(fexit_udpv6_recvmsg, struct sock *sk, struct msghdr *msg)
{
	return fexit_udp(ctx, sk, msg, DIR_RECV);
}

/* ---- DNS answers (both hook sets, when host names are learnt from DNS) ----------------------- */

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* Every packet delivered to a local socket passes here (cgroup v2 root, ingress): a UDP datagram
 * from port 53 is copied to user space, which parses the answers and learns the names processes
 * asked for. Costs two small loads per packet; unlike a packet socket it clones nothing. */
SEC("cgroup_skb/ingress")
int dns_answers(struct __sk_buff *skb)
{
	__u8 protocol = 0;
	__u32 l4 = 0;
	struct bpf_sock *sk = skb->sk;

	/* Decide from the receiving socket, without a helper call (each costs 25-50 ns on hosts with
	 * return-thunk mitigations): a DNS answer reaches either a socket connected to port 53 or an
	 * unconnected (TCP_CLOSE state) UDP socket. Established TCP traffic leaves here. */
	if (!sk || (sk->dst_port != bpf_htons(53) && sk->state != BPF_TCP_CLOSE))
		return 1;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 version_ihl = 0;

		if (bpf_skb_load_bytes(skb, 0, &version_ihl, 1) || bpf_skb_load_bytes(skb, 9, &protocol, 1))
			return 1;
		l4 = (version_ihl & 0x0f) * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes(skb, 6, &protocol, 1)) /* no extension headers: DNS never has them */
			return 1;
		l4 = 40;
	} else {
		return 1;
	}
	if (protocol != IPPROTO_UDP)
		return 1;
	__u16 source_port = 0;
	if (bpf_skb_load_bytes(skb, l4, &source_port, 2) || source_port != bpf_htons(53))
		return 1;

	struct pnf_dns *rec = bpf_ringbuf_reserve(&records, sizeof(*rec), 0);
	if (!rec) {
		count(PNF_C_RINGBUF_LOST);
		return 1;
	}
	__u32 len = skb->len;
	rec->hdr.kind = PNF_RECORD_DNS;
	rec->hdr.size = sizeof(*rec);
	rec->wire_len = len;
	if (len > PNF_DNS_MAX) {
		len = PNF_DNS_MAX;
		count(PNF_C_DNS_TRUNCATED);
	}
	if (len < 1 || bpf_skb_load_bytes(skb, 0, rec->packet, len)) {
		bpf_ringbuf_discard(rec, 0);
		return 1;
	}
	rec->len = len;
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
	return 1; /* never drop anything */
}

/* ---- connection lifecycle (both hook sets) -------------------------------------------------- */

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	switch (newstate) {
	case BPF_TCP_SYN_SENT:    /* connect() called: process context, pid is the owner */
	case BPF_TCP_ESTABLISHED: /* active: handshake done; passive: accepted (softirq) */
	case BPF_TCP_LISTEN:
	case BPF_TCP_FIN_WAIT1:   /* the owner closed or shut down first: process context */
	case BPF_TCP_LAST_ACK:    /* the owner closed after the peer did: process context */
	case BPF_TCP_CLOSE:       /* gone (or a connect that failed) */
		break;
	default:
		return 0;
	}
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (newstate == BPF_TCP_SYN_SENT || newstate == BPF_TCP_LISTEN) {
		/* process context: report the process now, before its state record, so that a process
		 * that only connects (a refused connect, a scan) and exits at once keeps its path and hash */
		__u64 id = bpf_get_current_pid_tgid();

		report_process(bpf_get_current_task_btf(), id >> 32, (__u32)bpf_get_current_uid_gid(),
			       bpf_ktime_get_ns());
	}

	struct pnf_sock_state *rec = bpf_ringbuf_reserve(&records, sizeof(*rec), 0);
	if (!rec) {
		count(PNF_C_RINGBUF_LOST);
		return 0;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	rec->hdr.kind = PNF_RECORD_SOCK_STATE;
	rec->hdr.size = sizeof(*rec);
	rec->ts_ns = bpf_ktime_get_ns();
	rec->cookie = (__u64)sk;
	rec->tgid = pid_tgid >> 32;
	rec->uid = (__u32)bpf_get_current_uid_gid();
	rec->family = family;
	rec->protocol = IPPROTO_TCP;
	rec->pad = 0;
	rec->oldstate = oldstate;
	rec->newstate = newstate;
	rec->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	rec->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	__builtin_memset(rec->laddr, 0, 16);
	__builtin_memset(rec->raddr, 0, 16);
	copy_addr_probe(rec->laddr, sk, family, false);
	copy_addr_probe(rec->raddr, sk, family, true);
	BPF_CORE_READ_STR_INTO(&rec->comm, task, group_leader, comm);
	/* no wake-up: the agent consumes lifecycle records on its own clock (every 50 ms), which
	 * saves an interrupt per state change */
	bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
	return 0;
}
