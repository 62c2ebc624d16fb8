// Loaded into the test IPFS daemon (node --import) when PINFOLD_IPFS_DNS names a DNS server
// (host:port): the daemon then resolves DNSLink names through that server alone.
import dns from 'node:dns';

dns.setServers([process.env.PINFOLD_IPFS_DNS]);
