package h2

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// A peer that vanished without closing its connection (its host gone, its
// process stopped) would hold the calls on the connection until TCP
// keepalive gives up, minutes later. So when nothing has been read from a
// connection for a while, it gets a PING, and if nothing at all arrives
// within the ping timeout the connection is closed and its calls fail as on
// any lost connection.
//
// Backends are pinged only while they have calls, and at most every five
// minutes and a half: a grpc-go server by default allows a client one PING
// per five minutes while streams are open and none without streams, and
// answers more with GOAWAY "too_many_pings", which would fail quiet
// long-lived streams. An idle backend connection is closed after
// backendIdleTimeout anyway.
const (
	backendReadIdle    = 5*time.Minute + 30*time.Second
	backendPingTimeout = 20 * time.Second
	clientReadIdle     = 60 * time.Second
	clientPingTimeout  = 15 * time.Second
)

// keepalivePing is the payload of our PINGs. Any frame from the peer counts
// as a sign of life, the ACK included, so it is not matched.
var keepalivePing = [8]byte{'a', 'l', 'b', 'c', 't', 'l', 'k', 'a'}

// keepalive is an h2conn's dead-peer detection. The reader stamps lastRead
// each time it is about to wait for input, not per frame; one timer per
// connection looks at the stamp when it fires and sets itself again, so
// the read path does no timer work.
type keepalive struct {
	born     time.Time
	lastRead atomic.Int64 // time since born, in ns

	mu          sync.Mutex
	readIdle    time.Duration
	pingTimeout time.Duration
	busy        func() bool   // nil, or whether the connection has calls: only then ping
	pingSent    time.Duration // since born; 0 if no PING is outstanding
	timer       *time.Timer
	stopped     bool
	dead        error // why the connection was closed, if it was
}

// startKeepalive arms the connection's keepalive timer. With busy set, the
// connection is pinged only while busy reports true.
func (c *h2conn) startKeepalive(readIdle, pingTimeout time.Duration, busy func() bool) {
	k := &c.keepalive
	k.born = time.Now()
	k.readIdle, k.pingTimeout, k.busy = readIdle, pingTimeout, busy
	k.timer = time.AfterFunc(readIdle, c.checkAlive)
}

// noteRead records that the reader has read everything the peer sent so
// far; it calls it before it waits for more.
func (c *h2conn) noteRead() {
	c.keepalive.lastRead.Store(int64(time.Since(c.keepalive.born)))
}

// stopKeepalive stops the timer once the reader is done. It returns why
// the keepalive closed the connection, or nil.
func (c *h2conn) stopKeepalive() error {
	k := &c.keepalive
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.timer.Stop()
	return k.dead
}

// checkAlive runs when the keepalive timer fires: it sends a PING if the
// connection has been quiet for readIdle, and closes it if nothing came
// since the last PING.
func (c *h2conn) checkAlive() {
	k := &c.keepalive
	busy := k.busy == nil || k.busy()
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	now := time.Since(k.born)
	last := time.Duration(k.lastRead.Load())
	if k.pingSent != 0 {
		if last < k.pingSent {
			k.stopped = true
			k.dead = fmt.Errorf("no answer to a PING within %v", k.pingTimeout)
			k.mu.Unlock()
			// The raw socket, not TLS, which would try to say goodbye.
			c.sc.Close()
			return
		}
		k.pingSent = 0
	}
	if idle := now - last; idle < k.readIdle || !busy {
		k.timer.Reset(max(k.readIdle-idle, k.readIdle/4))
		k.mu.Unlock()
		return
	}
	k.pingSent = now
	k.timer.Reset(k.pingTimeout)
	k.mu.Unlock()

	c.wmu.Lock()
	_ = c.fr.WritePing(false, keepalivePing)
	c.unlock(nil)
}
