package standby

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// ID prefixes, one per resource type.
const (
	PrefixProject  = "prj_"
	PrefixAPIKey   = "key_"
	PrefixTemplate = "tpl_"
	PrefixBuild    = "tb_"
	PrefixWarmPool = "twp_"
	PrefixInstance = "inst_"
	PrefixSandbox  = "sb_"
	PrefixService  = "svc_"
	PrefixHost     = "host_"
	PrefixArtifact = "art_"
)

const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

// NewID returns prefix followed by 26 lowercase Crockford base32 characters:
// 48 bits of milliseconds since the epoch, then 80 random bits. IDs sort in
// the order this process made them, so lists can page by id and come out in
// creation order: within one millisecond the random part of the next ID is
// the previous one's plus one.
func NewID(prefix string) string {
	b := idGen.next()
	// 128 bits -> 26 base32 characters (130 bits, top two zero).
	out := make([]byte, len(prefix)+26)
	copy(out, prefix)
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	for i := 25; i >= 0; i-- {
		out[len(prefix)+i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out)
}

// idGen is the process's one ID sequence. It is package state on purpose:
// IDs made by any part of the process must sort in the order they were
// made, which separate generators could not promise.
var idGen monotonic

type monotonic struct {
	mu   sync.Mutex
	last [16]byte
}

func (m *monotonic) next() [16]byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	m.mu.Lock()
	defer m.mu.Unlock()
	if bytes.Compare(b[:6], m.last[:6]) <= 0 {
		// Same millisecond (or the clock went back): last + 1.
		b = m.last
		for i := 15; i >= 6; i-- {
			b[i]++
			if b[i] != 0 {
				break
			}
		}
	} else if _, err := rand.Read(b[6:]); err != nil {
		panic("standby: crypto/rand failed: " + err.Error())
	}
	m.last = b
	return b
}

// NewSecret returns a random string of n base32 characters, for API keys
// and join tokens.
func NewSecret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("standby: crypto/rand failed: " + err.Error())
	}
	for i := range b {
		b[i] = crockford[b[i]&31]
	}
	return string(b)
}
