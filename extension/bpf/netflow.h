/* Layouts shared by the BPF program and user space (extension/events.py mirrors them; a test checks).
 * Every struct is padded by hand: no implicit holes, so the Python struct formats are exact. */
#ifndef NETFLOW_H
#define NETFLOW_H

#define PNF_PATH_DEPTH 12
#define PNF_NAME_LEN 64
#define PNF_COMM_LEN 16
#define PNF_DNS_MAX 1500 /* bytes of a DNS answer packet (from the IP header) passed up */

/* Counters in the per-CPU array `counters` (user space sums the CPUs). */
enum pnf_counter {
	PNF_C_INSERTS_0 = 0,      /* new keys created in flow buffer 0 (drained - inserted = evicted) */
	PNF_C_INSERTS_1 = 1,      /* same for buffer 1 */
	PNF_C_RINGBUF_LOST = 2,   /* lifecycle or process records dropped: ring buffer full */
	PNF_C_UPDATE_FAILED = 3,  /* map update failed for another reason than a concurrent insert */
	PNF_C_UDP_NO_PEER = 4,    /* unconnected UDP traffic whose peer was not learnt (recv() without an address) */
	PNF_C_EVENTS = 5,         /* traffic calls counted (every send and receive seen) */
	PNF_C_DNS_TRUNCATED = 6,  /* DNS answers longer than PNF_DNS_MAX: cut, names may be missed */
	PNF_C_MAX = 7,
};

enum pnf_record_kind {
	PNF_RECORD_SOCK_STATE = 1,
	PNF_RECORD_PROCESS = 2,
	PNF_RECORD_DNS = 3,
};

struct pnf_control {
	__u32 active;           /* which flow buffer the programs write to: 0 or 1 */
	__u32 exclude_loopback; /* 1: do not count traffic with a loopback peer */
};

struct pnf_flow_key {
	__u32 tgid;
	__u32 uid;
	__u16 family;   /* AF_INET or AF_INET6, as the socket is */
	__u8 protocol;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
	__u16 lport;    /* host byte order */
	__u16 rport;
	__u8 laddr[16]; /* network byte order; IPv4 in the first 4 bytes */
	__u8 raddr[16];
	char comm[PNF_COMM_LEN]; /* the process's (thread group leader's) name */
};

struct pnf_flow_value {
	__u64 bytes_sent;
	__u64 bytes_received;
	__u64 sends;
	__u64 receives;
	__u64 first_ns;      /* bpf_ktime_get_ns() when the entry was created */
	__u64 first_jiffies; /* bpf_jiffies64() at the same moment ... */
	__u64 last_jiffies;  /* ... and at the last call: user space turns ticks into time */
	__u64 first_dir;     /* direction of the call that created the entry: 0 send, 1 receive */
};

struct pnf_record_header {
	__u32 kind;
	__u32 size;
};

struct pnf_sock_state {
	struct pnf_record_header hdr;
	__u64 ts_ns;
	__u64 cookie; /* identifies the socket while it lives */
	__u32 tgid;   /* current task: the owner only in process context */
	__u32 uid;
	__u16 family;
	__u8 protocol;
	__u8 pad;
	__s32 oldstate;
	__s32 newstate;
	__u16 lport;
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[PNF_COMM_LEN];
};

struct pnf_process {
	struct pnf_record_header hdr;
	__u64 ts_ns;
	__u64 start_ns; /* start_boottime of the thread group leader */
	__u32 tgid;
	__u32 ppid;
	__u32 uid;
	__u32 dev;      /* s_dev of the executable's file system (kernel encoding) */
	__u64 ino;
	__s64 mtime_sec;
	__u64 size;
	char comm[PNF_COMM_LEN];
	__u16 depth;    /* path components in names[], from the file up to the root */
	__u8 pad[6];
	char names[PNF_PATH_DEPTH][PNF_NAME_LEN];
};

/* A DNS answer received by this host (UDP from port 53), from its IP header on. */
struct pnf_dns {
	struct pnf_record_header hdr;
	__u32 len;      /* bytes in packet[] */
	__u32 wire_len; /* the packet's full length */
	__u8 packet[PNF_DNS_MAX];
	__u8 pad[4];
};

#endif
