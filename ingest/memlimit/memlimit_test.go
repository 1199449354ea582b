package memlimit

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestReserveWaitsForRelease(t *testing.T) {
	l := New(100)
	if err := l.Reserve(context.Background(), 70); err != nil {
		t.Fatal(err)
	}
	granted := make(chan error, 1)
	go func() { granted <- l.Reserve(context.Background(), 50) }()
	select {
	case err := <-granted:
		t.Fatalf("50 bytes granted while 70 of 100 are held: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	l.Release(70)
	if err := <-granted; err != nil {
		t.Fatal(err)
	}
	if l.Held() != 50 {
		t.Fatalf("held %d, want 50", l.Held())
	}
}

func TestReserveRefusals(t *testing.T) {
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
}

func TestNilLimiterReservesNothing(t *testing.T) {
	var l *Limiter
	if err := l.Reserve(context.Background(), 1<<40); err != nil {
		t.Fatal(err)
	}
	l.Release(1 << 40)
	if l.Held() != 0 || l.Limit() != 0 {
		t.Fatal("nil limiter holds bytes")
	}
}
