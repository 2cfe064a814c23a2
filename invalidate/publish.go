// publish.go holds the sending side: Publish, the one sender goroutine and its group commit.

package invalidate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/backends/goredis"
	"github.com/tiercache/tiercache/tier"
)

// pubReq is one Publish, ack request (waiter) or ack, or (with done ==
// nil) one heartbeat, for the sender goroutine.
type pubReq struct {
	r          *reg
	keys, tags []string
	heartbeat  bool
	waiter     *waiter // an ack request: WaitApplied's
	ack        *ackReq // an ack this bus owes
	done       chan error
	// del are full L2 keys of be to DEL before the PUBLISH that carries
	// keys, on the same connection (see [reg.DeleteAndPublish]); delErr is
	// their error, set by the sender before done is sent.
	del    []string
	be     *goredis.Backend
	delErr error
}

// Publish implements tier.Publisher. It returns once the message carrying
// the keys and tags was published (or failed).
func (r *reg) Publish(ctx context.Context, keys, tags []string) error {
	req := &pubReq{r: r, keys: keys, tags: tags, done: make(chan error, 1)}
	if r.sendNow(ctx, req) {
		return <-req.done
	}
	if err := r.enqueue(ctx, req); err != nil {
		return err
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("invalidate: publish: %w", context.Cause(ctx))
	}
}

// CanDeleteAndPublish implements tier.DeletePublisher. It says yes when l2
// is a goredis.Backend on this bus's own client that does not wait for
// replicas, and the bus publishes on the node that holds full: always on
// one server or Sentinel, on Cluster when full's masters are the node the
// channel is published on (a Ring client never: it publishes and deletes
// on different shards).
func (r *reg) CanDeleteAndPublish(l2 tier.Remote, full []string) bool {
	be, ok := l2.(*goredis.Backend)
	b := r.bus
	if !ok || be.WaitReplicas() != 0 || be.Client() != b.c {
		return false
	}
	b.mu.Lock()
	running := b.running
	b.mu.Unlock()
	if !running {
		return false
	}
	if b.topo.cluster == nil {
		_, single := b.c.(*redis.Client)
		return single
	}
	ctx, cancel := context.WithTimeout(context.Background(), fuseLookup)
	defer cancel()
	_, addr, err := b.topo.publisher(ctx, r.channel)
	if err != nil {
		return false
	}
	for _, k := range full {
		n, err := b.topo.cluster.MasterForKey(ctx, k)
		if err != nil || n.Options().Addr != addr {
			return false
		}
	}
	return true
}

// fuseLookup bounds CanDeleteAndPublish's wait for a Cluster slot map.
const fuseLookup = 100 * time.Millisecond

// DeleteAndPublish implements tier.DeletePublisher: the sender puts one
// DEL per key of full before the PUBLISH that carries keys, in the
// pipeline of the node the channel is published on. Redis runs one
// connection's commands in order, so the keys are deleted before any
// subscriber receives the message. If the slot map changed since
// CanDeleteAndPublish, the DEL is refused with MOVED (an error reply) and
// the cache replays it.
func (r *reg) DeleteAndPublish(ctx context.Context, l2 tier.Remote, full, keys []string) (l2Err, pubErr error) {
	be, _ := l2.(*goredis.Backend)
	if be == nil {
		err := errors.New("invalidate: delete and publish: L2 is not a goredis.Backend")
		return err, err
	}
	req := &pubReq{r: r, keys: keys, del: full, be: be, done: make(chan error, 1)}
	if r.sendNow(ctx, req) {
		err := <-req.done
		return req.delErr, err
	}
	if err := r.enqueue(ctx, req); err != nil {
		return err, err
	}
	select {
	case err := <-req.done:
		return req.delErr, err
	case <-ctx.Done():
		err := fmt.Errorf("invalidate: delete and publish: %w", context.Cause(ctx))
		return err, err
	}
}

// sendNow publishes req on the caller's goroutine, under ctx, when the
// sender is idle (it holds no flush and nothing waits for it): a hand-off
// to the sender and back costs two goroutine wake-ups, which on a busy
// machine were a third of a Delete's time. Holding sendMu, as the sender
// does for each flush, keeps the instance's messages in sequence order.
// It reports whether it did (req.done then holds the answer).
//
// The PUBLISH then runs under the caller's deadline (a caller never waits
// longer than it asked): one cut short may not have gone out, and the
// receivers then see a gap in the sequence numbers at the next message and
// drop L1, the safe direction.
func (r *reg) sendNow(ctx context.Context, req *pubReq) bool {
	b := r.bus
	if ctx.Err() != nil || len(b.reqs) > 0 || !b.sendMu.TryLock() {
		return false
	}
	defer b.sendMu.Unlock()
	if !b.sendOpen || len(b.reqs) > 0 {
		return false
	}
	b.flush(ctx, []*pubReq{req})
	return true
}

// enqueue hands req to the sender goroutine.
func (r *reg) enqueue(ctx context.Context, req *pubReq) error {
	b := r.bus
	b.mu.Lock()
	running := b.running
	b.mu.Unlock()
	if !running {
		return ErrNotRunning
	}
	select {
	case b.reqs <- req:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("invalidate: publish: %w", context.Cause(ctx))
	}
}

// send is the goroutine that publishes what callers queue (and
// heartbeats and acks); each flush holds sendMu, as does a caller that
// publishes its own request (see [reg.sendNow]), so an instance's messages
// reach Redis in sequence order. It batches every request that is waiting
// when it starts a PUBLISH.
func (b *Bus) send(ctx context.Context) {
	b.sendMu.Lock()
	b.sendOpen = true
	b.sendMu.Unlock()
	for {
		var first *pubReq
		select {
		case <-ctx.Done():
			b.sendMu.Lock()
			defer b.sendMu.Unlock()
			b.sendOpen = false
			b.failPending()
			b.leave()
			return
		case first = <-b.reqs:
		}
		b.sendMu.Lock()
		batch := []*pubReq{first}
		size := len(first.keys) + len(first.tags)
	drain:
		for size < b.o.MaxBatch {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
				size += len(r.keys) + len(r.tags)
			default:
				break drain
			}
		}
		b.flush(ctx, batch)
		b.sendMu.Unlock()
	}
}

// outMsg is one PUBLISH of a flush: a data message with the requests it
// answers, or a heartbeat (reqs == nil).
type outMsg struct {
	r       *reg
	payload []byte
	reqs    []*pubReq
	lost    bool  // a test drops it (see DropOnSend)
	err     error // set by publish
	// receivers is the PUBLISH reply: how many subscribers of the node
	// published on got it (only the probe reads it).
	receivers int64
	// probeGen is, for the probe, the subscription it checks (Bus.psGen).
	probeGen uint64
	request  bool // an ack request (reqs holds its WaitApplied)
	ack      bool // an ack
}

// flush publishes one data message per channel for the batch's requests,
// and the heartbeats it carries, then answers the requests.
func (b *Bus) flush(ctx context.Context, batch []*pubReq) {
	now := time.Now().UnixNano()
	var msgs []*outMsg
	data := map[*reg]*message{}
	byReg := map[*reg]*outMsg{}
	var beats []*reg
	var acks []*pubReq
	for _, q := range batch {
		if q.heartbeat {
			if !slices.Contains(beats, q.r) {
				beats = append(beats, q.r)
			}
			continue
		}
		if q.waiter != nil || q.ack != nil {
			acks = append(acks, q)
			continue
		}
		m, ok := data[q.r]
		if !ok {
			m = &message{kind: kindInvalidate, origin: b.o.InstanceID}
			data[q.r] = m
			byReg[q.r] = &outMsg{r: q.r}
			msgs = append(msgs, byReg[q.r])
		}
		m.keys = append(m.keys, q.keys...)
		m.tags = append(m.tags, q.tags...)
		byReg[q.r].reqs = append(byReg[q.r].reqs, q)
	}
	for _, o := range msgs {
		o.r.seq++
		m := data[o.r]
		m.seq, m.at = o.r.seq, now
		o.payload = m.encode()
		o.lost = b.dropOnSend != nil && b.dropOnSend(o.r.channel, m.seq)
	}
	// A channel's heartbeat follows its data message (it carries the last
	// number sent), on the same node.
	for _, r := range beats {
		m := message{kind: kindHeartbeat, origin: b.o.InstanceID, seq: r.seq, at: now}
		msgs = append(msgs, &outMsg{r: r, payload: m.encode()})
	}
	// Ack requests and acks follow the data messages of their channel
	// (they, too, carry the last number sent), on the same node.
	msgs = append(msgs, b.ackMsgs(acks, now)...)
	var probe *outMsg
	if len(beats) > 0 {
		if probe = b.probeMsg(); probe != nil {
			msgs = append(msgs, probe)
		}
	}
	// An ack is counted sent before its PUBLISH, so that a requester that
	// got it can see it counted here; a failed PUBLISH moves it to
	// AcksDropped.
	for _, o := range msgs {
		if o.ack {
			b.acksSent.Add(1)
		}
	}
	b.publish(ctx, msgs)
	if probe != nil {
		b.checkProbe(probe)
	}
	for _, o := range msgs {
		if o.ack && o.err != nil {
			b.acksSent.Add(^uint64(0))
			b.acksDropped.Add(1)
		}
		if o.reqs == nil {
			continue
		}
		err := o.err
		switch {
		case o.request:
			// Not an invalidation: not counted in Sent or SendErrors.
			if err != nil {
				err = fmt.Errorf("invalidate: publish: %w", err)
			}
		case err != nil:
			b.sendErrors.Add(1)
			err = fmt.Errorf("invalidate: publish: %w", err)
		default:
			b.sent.Add(1)
		}
		for _, q := range o.reqs {
			q.done <- err
		}
	}
}

// publish sends msgs, each on its channel's node (see [topology.publisher]),
// one pipeline per node, keeping their order within a channel; it sets
// each one's err. Redis delivers one node's messages in the order it
// received them, so publishing every message of a channel on one node is
// what keeps an origin's messages in order on Cluster.
//
// On Cluster, the messages a node failed to take because of its
// connection (not a Redis error reply) are sent once more, on the node
// that replaces it (see [topology.node]), with the same sequence numbers:
// if the first attempt did deliver one, the receivers see it twice, count
// a gap and drop L1, the safe direction.
func (b *Bus) publish(ctx context.Context, msgs []*outMsg) {
	var pending []*outMsg
	for _, o := range msgs {
		if !o.lost || o.deletes() {
			pending = append(pending, o)
		}
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		failed := b.publishOnce(ctx, pending)
		if attempt > 0 || !b.topo.retries() || ctx.Err() != nil {
			return
		}
		pending = failed
	}
}

// publishOnce is one attempt of publish. It returns the messages that
// failed on a connection error, after reporting their node as failed.
func (b *Bus) publishOnce(ctx context.Context, msgs []*outMsg) (failed []*outMsg) {
	type group struct {
		node redis.Cmdable
		addr string
		msgs []*outMsg
	}
	var groups []*group
	byNode := map[string]*group{}
	for _, o := range msgs {
		node, addr, err := b.topo.publisher(ctx, o.r.channel)
		if err != nil {
			o.err = err
			continue
		}
		g := byNode[addr]
		if g == nil {
			g = &group{node: node, addr: addr}
			byNode[addr] = g
			groups = append(groups, g)
		}
		g.msgs = append(g.msgs, o)
	}
	if len(groups) == 1 {
		b.pipeline(ctx, groups[0].node, groups[0].msgs)
	} else {
		var wg sync.WaitGroup
		for _, g := range groups {
			// Nodes are independent: a stuck one does not hold back the others.
			wg.Go(func() { b.pipeline(ctx, g.node, g.msgs) })
		}
		wg.Wait()
	}
	for _, g := range groups {
		n := len(failed)
		for _, o := range g.msgs {
			var reply redis.Error
			if o.err != nil && !errors.As(o.err, &reply) {
				failed = append(failed, o)
			}
		}
		if len(failed) > n && ctx.Err() == nil {
			b.topo.failed(g.addr)
		}
	}
	return failed
}

// pipeline publishes msgs on node in one round trip and sets each one's
// err (and a probe's receivers).
func (b *Bus) pipeline(ctx context.Context, node redis.Cmdable, msgs []*outMsg) {
	// Callers wait with their own deadlines; this one only keeps a stuck
	// connection from holding the sender forever.
	pctx, cancel := context.WithTimeout(ctx, max(b.o.Heartbeat, time.Second))
	defer cancel()
	cmds := make([]*redis.IntCmd, len(msgs))
	var dels map[*pubReq][]*redis.IntCmd
	_, err := node.Pipelined(pctx, func(p redis.Pipeliner) error {
		for i, o := range msgs {
			// A request's DELs go before the PUBLISH that tells the
			// others, on this connection: Redis applies them first.
			for _, q := range o.reqs {
				for _, k := range q.del {
					if dels == nil {
						dels = map[*pubReq][]*redis.IntCmd{}
					}
					dels[q] = append(dels[q], p.Del(pctx, k))
				}
			}
			if !o.lost {
				cmds[i] = p.Publish(pctx, o.r.channel, o.payload)
			}
		}
		return nil
	})
	for i, o := range msgs {
		if o.lost {
			continue
		}
		o.err = cmdErr(cmds[i], err)
		o.receivers = cmds[i].Val()
	}
	for q, cs := range dels {
		q.delErr = nil
		for _, c := range cs {
			if q.delErr = cmdErr(c, err); q.delErr != nil {
				break
			}
		}
		if q.delErr != nil {
			q.delErr = q.be.DeleteError(q.delErr)
		} else {
			b.deletesSent.Add(uint64(len(cs)))
		}
	}
}

// deletes reports whether o carries DELs (see [reg.DeleteAndPublish]).
func (o *outMsg) deletes() bool {
	for _, q := range o.reqs {
		if len(q.del) > 0 {
			return true
		}
	}
	return false
}

// cmdErr returns the error of one command of a pipeline whose error (the
// first failed command's) is err. A Redis error reply belongs to its own
// command (a heartbeat refused on another channel does not fail this one);
// any other error may have lost them all.
func cmdErr(c *redis.IntCmd, err error) error {
	if c != nil && c.Err() != nil {
		return c.Err()
	}
	var reply redis.Error
	if err == nil || errors.As(err, &reply) {
		return nil
	}
	return err
}

// failPending answers the requests still queued when Run stops.
func (b *Bus) failPending() {
	for {
		select {
		case q := <-b.reqs:
			if q.done != nil {
				if q.del != nil {
					q.delErr = ErrNotRunning
				}
				q.done <- ErrNotRunning
			}
			if q.ack != nil {
				b.acksDropped.Add(1)
			}
		default:
			return
		}
	}
}
