import { createSocket } from 'node:dgram';
import { isIPv4 } from 'node:net';

/**
 * A small authoritative DNS server on loopback UDP, for one name: A queries get the current `addresses`
 * (IPv4 only), AAAA queries an empty answer (NODATA), other names NXDOMAIN; `failing` answers SERVFAIL
 * to everything, as a DNS server that cannot answer does. A real server speaking the wire format
 * (RFC 1035 §4), so Gravity's node:dns Resolver is tested as it runs in a cluster.
 */
export interface DnsServer {
  /** `127.0.0.1:<port>`, for `Resolver.setServers`. */
  readonly address: string;
  addresses: string[];
  failing: boolean;
  /** Queries answered so far. */
  readonly queries: number;
  close(): Promise<void>;
}

const typeA = 1;
const classIn = 1;

export async function startDnsServer(name: string, addresses: string[] = []): Promise<DnsServer> {
  const socket = createSocket('udp4');
  const state = { addresses, failing: false, queries: 0 };
  socket.on('message', (query, peer) => {
    const answer = answerQuery(query, name, state);
    if (answer === null) return;
    state.queries++;
    socket.send(answer, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const port = socket.address().port;
  return {
    address: `127.0.0.1:${port}`,
    get addresses() {
      return state.addresses;
    },
    set addresses(list: string[]) {
      state.addresses = list;
    },
    get failing() {
      return state.failing;
    },
    set failing(value: boolean) {
      state.failing = value;
    },
    get queries() {
      return state.queries;
    },
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}

function answerQuery(
  query: Buffer,
  name: string,
  state: { addresses: string[]; failing: boolean },
): Buffer | null {
  if (query.length < 12 || query.readUInt16BE(4) !== 1) return null;
  // The question: labels up to the root, then its type and class.
  const labels: string[] = [];
  let offset = 12;
  while (offset < query.length && query[offset] !== 0) {
    const length = query[offset] as number;
    labels.push(query.subarray(offset + 1, offset + 1 + length).toString('ascii'));
    offset += 1 + length;
  }
  const questionEnd = offset + 5;
  if (questionEnd > query.length) return null;
  const type = query.readUInt16BE(offset + 1);
  const asked = labels.join('.').toLowerCase();
  let rcode = 0;
  let records: Buffer[] = [];
  if (state.failing) rcode = 2;
  else if (asked !== name.toLowerCase()) rcode = 3;
  else if (type === typeA)
    records = state.addresses.filter((address) => isIPv4(address)).map((address) => aRecord(address));
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  // QR, the query's opcode and RD, AA and RA; then the response code.
  const flags = 0x8000 | (query.readUInt16BE(2) & 0x7900) | 0x0400 | 0x0080 | rcode;
  header.writeUInt16BE(flags, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(records.length, 6);
  return Buffer.concat([header, query.subarray(12, questionEnd), ...records]);
}

/** An A record for the question's name (a pointer to offset 12), TTL 1 s. */
function aRecord(address: string): Buffer {
  const record = Buffer.alloc(16);
  record.writeUInt16BE(0xc00c, 0);
  record.writeUInt16BE(typeA, 2);
  record.writeUInt16BE(classIn, 4);
  record.writeUInt32BE(1, 6);
  record.writeUInt16BE(4, 10);
  address.split('.').forEach((part, index) => {
    record[12 + index] = Number(part);
  });
  return record;
}
