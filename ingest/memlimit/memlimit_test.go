package memlimit

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestReserveWaitsForRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(100)
		if err := l.Reserve(context.Background(), 70); err != nil {
			t.Fatal(err)
		}
		granted := make(chan error, 1)
		go func() { granted <- l.Reserve(context.Background(), 50) }()
		synctest.Wait()
		select {
		case err := <-granted:
			t.Fatalf("50 bytes granted while 70 of 100 are held: %v", err)
		default:
		}
		l.Release(70)
		if err := <-granted; err != nil {
			t.Fatal(err)
		}
		if l.Held() != 50 {
			t.Fatalf("held %d, want 50", l.Held())
		}
	})
}

func TestReserveRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(100)
		var tooLarge *TooLargeError
		if err := l.Reserve(context.Background(), 101); !errors.As(err, &tooLarge) {
			t.Fatalf("101 of 100: got %v, want a TooLargeError", err)
		}
		if err := l.Reserve(context.Background(), 60); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		err := l.Reserve(ctx, 60)
		var busy *BusyError
		if !errors.As(err, &busy) || !errors.Is(err, context.DeadlineExceeded) || busy.Held != 60 {
			t.Fatalf("60 more of 100 with 60 held: got %v, want a BusyError holding 60", err)
		}
		if l.Held() != 60 {
			t.Fatalf("a refused reservation left %d held, want 60", l.Held())
		}
	})
}

// TestResizePastTheBudget: a reservation grown in steps past the whole
// budget is refused as too large, not left waiting for room that cannot
// come, and holds nothing after.
func TestResizePastTheBudget(t *testing.T) {
	l := New(100)
	r := l.Reservation(context.Background(), time.Second)
	if err := r.Resize(60); err != nil {
		t.Fatal(err)
	}
	var tooLarge *TooLargeError
	if err := r.Resize(120); !errors.As(err, &tooLarge) || tooLarge.Need != 120 {
		t.Fatalf("60 then 120 of 100: got %v, want a TooLargeError of 120", err)
	}
	if r.Held() != 0 || l.Held() != 0 {
		t.Fatalf("after the refusal the reservation holds %d, the limiter %d; want 0", r.Held(), l.Held())
	}
}

// TestResizeGivesBackWhileWaiting: two requests each hold half the budget
// and want more. The first waits with nothing held, so the second's bytes
// let it through, and the second follows once the first is done; neither
// times out holding what the other needs.
func TestResizeGivesBackWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(100)
		a := l.Reservation(context.Background(), time.Minute)
		b := l.Reservation(context.Background(), time.Minute)
		if err := errors.Join(a.Resize(50), b.Resize(50)); err != nil {
			t.Fatal(err)
		}
		aDone := make(chan error, 1)
		go func() { aDone <- a.Resize(60) }()
		synctest.Wait() // a waits, holding nothing
		bDone := make(chan error, 1)
		go func() { bDone <- b.Resize(60) }()
		if err := <-aDone; err != nil {
			t.Fatalf("first request: %v", err)
		}
		synctest.Wait()
		select {
		case err := <-bDone:
			t.Fatalf("second request got 60 while the first holds 60 of 100: %v", err)
		default:
		}
		a.Release()
		if err := <-bDone; err != nil {
			t.Fatalf("second request: %v", err)
		}
		if l.Held() != 60 {
			t.Fatalf("held %d, want 60", l.Held())
		}
	})
}

// TestResizeWaitsFromTheWait: the wait bound counts from the resize that
// waits, not from the reservation's start: a request that spent longer than
// it reading its body still gets free bytes, and waits its full bound.
func TestResizeWaitsFromTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := New(100)
		r := l.Reservation(context.Background(), time.Second)
		time.Sleep(5 * time.Second) // a slow body
		if err := r.Resize(10); err != nil {
			t.Fatalf("free bytes after a slow body: %v", err)
		}
		if err := l.Reserve(context.Background(), 90); err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(900 * time.Millisecond)
			l.Release(90)
		}()
		if err := r.Resize(50); err != nil {
			t.Fatalf("bytes freed within the wait: %v", err)
		}
		if err := r.Resize(20); err != nil || r.Held() != 20 || l.Held() != 20 {
			t.Fatalf("shrinking to 20: %v, reservation %d, limiter %d", err, r.Held(), l.Held())
		}
	})
}

func TestNilLimiterReservesNothing(t *testing.T) {
	var l *Limiter
	if err := l.Reserve(context.Background(), 1<<40); err != nil {
		t.Fatal(err)
	}
	l.Release(1 << 40)
	r := l.Reservation(context.Background(), time.Second)
	if err := r.Resize(1 << 40); err != nil {
		t.Fatal(err)
	}
	r.Release()
	if l.Held() != 0 || l.Limit() != 0 {
		t.Fatal("nil limiter holds bytes")
	}
}
