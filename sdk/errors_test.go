package sdk

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestPermanent(t *testing.T) {
	if Permanent(nil) != nil {
		t.Fatal("Permanent(nil) is not nil")
	}
	base := errors.New("400 bad request")
	p := Permanent(base)
	wrapped := fmt.Errorf("post: %w", p)
	if !IsPermanent(p) || !IsPermanent(wrapped) || IsPermanent(base) {
		t.Fatal("IsPermanent does not follow the mark")
	}
	if !errors.Is(wrapped, base) || wrapped.Error() != "post: 400 bad request" {
		t.Fatalf("the mark changed the error: %v", wrapped)
	}
}

func TestHostError(t *testing.T) {
	tests := []struct {
		in       error
		want     string
		deadline bool
		canceled bool
	}{
		{in: nil},
		{in: status.Error(codes.Unknown, "hostapi: kv put b/k: bucket not found"), want: "hostapi: kv put b/k: bucket not found"},
		{in: status.Error(codes.DeadlineExceeded, "slow"), want: "host kv get: slow: context deadline exceeded", deadline: true},
		{in: status.Error(codes.Canceled, "gone"), want: "host kv get: gone: context canceled", canceled: true},
		{in: status.Error(codes.Unavailable, "conn closed"), want: "host kv get: conn closed (Unavailable)"},
	}
	for _, tt := range tests {
		got := hostError("kv get", tt.in)
		if tt.in == nil {
			if got != nil {
				t.Fatalf("hostError(nil) = %v", got)
			}
			continue
		}
		if got.Error() != tt.want || errors.Is(got, context.DeadlineExceeded) != tt.deadline || errors.Is(got, context.Canceled) != tt.canceled {
			t.Errorf("hostError(%v) = %v", tt.in, got)
		}
	}
}
