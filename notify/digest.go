package notify

import "time"

// entry is one notification read from a stream.
type entry struct {
	id      string
	ms      int64 // Redis's time when it was queued, from id
	user    string
	ch      Channel
	dedup   string
	payload []byte
}

// window is the digest rule. The digest of a channel starts at its oldest
// unsent entry (t0) and holds the entries queued before t0+maxDelay, at
// most maxItems of them, oldest first. It is ready once it is full or once
// Redis's clock has passed t0+maxDelay. Nothing else goes into the choice,
// in particular not which consumer reads the stream nor when: the same
// unsent entries always give the same digests, which is what makes a
// re-sent digest carry the same provider key.
type window struct {
	maxDelay int64 // ms
	maxItems int
}

// plan splits es (one channel's unsent entries, in stream order) into the
// digests ready at now (ms, Redis's clock) and returns when the next one
// is due (0 if none is left). If the read was truncated, entries queued at
// or after lastMs may be missing: a digest that is not full is then only
// ready if its window ended by lastMs, so that it never goes out without
// an entry that belongs to it.
func (w window) plan(es []entry, now int64, truncated bool, lastMs int64) (ready [][]entry, rest int, nextDue int64) {
	i := 0
	for i < len(es) {
		t0 := es[i].ms
		end := t0 + w.maxDelay
		j := i
		for j < len(es) && j-i < w.maxItems && es[j].ms < end {
			j++
		}
		full := j-i == w.maxItems
		closed := now >= end && (!truncated || end <= lastMs)
		if !full && !closed {
			return ready, len(es) - i, end
		}
		ready = append(ready, es[i:j])
		i = j
	}
	return ready, 0, 0
}

func (e entry) item() Item {
	return Item{ID: e.id, DedupKey: e.dedup, Payload: e.payload, At: time.UnixMilli(e.ms)}
}
