package tier

import (
	"sync"
	"sync/atomic"
	"time"
)

// pendingOps are the steps of an invalidation still to be done for one key
// or tag.
type pendingOps uint8

const (
	// opL2 is the L2 step: DEL of the key (which also removes its lease),
	// or the tag's invalidation time.
	opL2 pendingOps = 1 << iota
	// opPub is a message that tells the other instances, to send now.
	opPub
	// opRepub is a message to send once the L2 step is done: while L2
	// held the old value, another instance may have read it back into its
	// L1 after the first message.
	opRepub
)

// outItem is one key or tag waiting for replay.
type outItem struct {
	ops pendingOps
	gen uint64 // the add that touched it last
}

// outEntry is an outItem as the replayer took it.
type outEntry struct {
	name string
	tag  bool
	outItem
}

// addResult is what [outbox.add] did.
type addResult uint8

const (
	addKept     addResult = iota + 1 // queued for replay
	addCovered                       // nothing to queue: the owed epoch move covers it
	addOverflow                      // over the bound: nothing queued
)

// outbox keeps the invalidations that could not be completed,
// de-duplicated and bounded, until they are replayed. Nothing leaves it
// before its steps succeeded: the replayer reads a snapshot and settles
// each entry it completed only if no newer add touched it meanwhile. What
// cannot be kept (over the bound) makes the namespace owe an epoch move,
// which covers every key of the epoch and is remembered until it is done.
type outbox struct {
	limit int           // immutable after New
	kick  chan struct{} // wakes the replayer; immutable after New

	mu    sync.Mutex
	keys  map[string]outItem // guarded by mu
	tags  map[string]outItem // guarded by mu
	gen   uint64             // guarded by mu: counts adds
	owed  Reason             // guarded by mu: why an epoch move is owed ("" none)
	owedN uint64             // guarded by mu: counts the times a move became owed

	// owing mirrors owed != "" for the read path (one atomic load).
	owing atomic.Bool
	// pubClear: a "namespace cleared" message (epochTag) is owed to the
	// other instances; it is not bounded by limit.
	pubClear atomic.Bool
	n        atomic.Int64 // len(keys) + len(tags), for Stats
}

// add queues the steps (ops) of each entry. While an epoch move is owed
// nothing is queued (the move and the message that follows it cover every
// key and tag of the namespace). Past the bound nothing is queued either.
func (o *outbox) add(entries []outEntry) addResult {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.owed != "" {
		return addCovered
	}
	if o.keys == nil {
		o.keys, o.tags = map[string]outItem{}, map[string]outItem{}
	}
	n := len(o.keys) + len(o.tags)
	seen := make(map[outEntry]bool, len(entries))
	for _, e := range entries {
		m := o.keys
		if e.tag {
			m = o.tags
		}
		id := outEntry{name: e.name, tag: e.tag}
		if _, ok := m[e.name]; !ok && !seen[id] {
			n++
		}
		seen[id] = true
	}
	if n > o.limit {
		return addOverflow
	}
	o.gen++
	for _, e := range entries {
		m := o.keys
		if e.tag {
			m = o.tags
		}
		m[e.name] = outItem{ops: m[e.name].ops | e.ops, gen: o.gen}
	}
	o.n.Store(int64(n))
	o.wake()
	return addKept
}

func (o *outbox) wake() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// snapshot returns what is queued, without removing it.
func (o *outbox) snapshot() []outEntry {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]outEntry, 0, len(o.keys)+len(o.tags))
	for k, it := range o.keys {
		out = append(out, outEntry{name: k, outItem: it})
	}
	for t, it := range o.tags {
		out = append(out, outEntry{name: t, tag: true, outItem: it})
	}
	return out
}

// settle records the replay of entries taken by snapshot: each entry's
// ops field now holds the steps still left. An entry that an add touched
// since the snapshot is left as it is (it is replayed again: the steps are
// idempotent). It adds how many entries are done to replayed before the
// pending count drops, so that whoever sees PendingInvalidations fall sees
// Replayed count them.
func (o *outbox) settle(entries []outEntry, replayed *atomic.Uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range entries {
		m := o.keys
		if e.tag {
			m = o.tags
		}
		it, ok := m[e.name]
		if !ok || it.gen != e.gen {
			continue
		}
		if e.ops == 0 {
			delete(m, e.name)
			replayed.Add(1)
		} else {
			m[e.name] = outItem{ops: e.ops, gen: it.gen}
		}
	}
	o.n.Store(int64(len(o.keys) + len(o.tags)))
}

// owe records that the namespace owes an epoch move, for reason. It
// reports whether the move was not owed already, and returns the number
// that [outbox.moved] needs.
func (o *outbox) owe(reason Reason) (seq uint64, first bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.owedN++
	first = o.owed == ""
	if first {
		o.owed = reason
	}
	o.owing.Store(true)
	o.wake()
	return o.owedN, first
}

// owedMove returns why an epoch move is owed ("" when none) and its number.
func (o *outbox) owedMove() (reason Reason, seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.owed, o.owedN
}

// moved records the owed move seq as done: every queued key and tag is
// covered by it (and by the message that follows it). It reports false,
// and changes nothing, if another move was owed since seq.
func (o *outbox) moved(seq uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.owedN != seq {
		return false
	}
	o.owed = ""
	o.owing.Store(false)
	clear(o.keys)
	clear(o.tags)
	o.n.Store(0)
	return true
}

// pendingL2 reports whether the L2 step of a Delete (or a failed Set) of
// key waits for replay: L2 may still hold the value it removes.
func (o *outbox) pendingL2(key string) bool {
	if o.n.Load() == 0 {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.keys[key].ops&opL2 != 0
}

// len returns how many keys and tags wait for replay (a "namespace
// cleared" message counts as one).
func (o *outbox) len() int {
	n := int(o.n.Load())
	if o.pubClear.Load() {
		n++
	}
	return n
}

// replayInterval is how often the replayer retries while the outbox is not
// empty.
const replayInterval = 100 * time.Millisecond
