package flow

import (
	"testing"
	"time"
)

func TestAnnotate(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	ago := func(s int) time.Time { return now.Add(-time.Duration(s) * time.Second) }
	k := func(c string) NodeKey { return NodeKey{Stream: "S", Consumer: c} }
	fresh := func() *State {
		return &State{
			Nodes: []Node{
				{Key: k("a1"), Group: "a"}, {Key: k("a2"), Group: "a"},
				{Key: k("b1"), Group: "b"}, {Key: k("n1")},
			},
			Groups: []Group{{Name: "a"}, {Name: "b"}},
		}
	}
	tests := []struct {
		name string
		sig  Signals
		// want
		leader      [4]float64 // per node
		groupDown   [2]bool
		groupSecs   [2]float64
		down, ann   int
		downSecs    float64
		routesLost  int
		serverSigns bool
	}{
		{
			name:   "nothing heard",
			leader: [4]float64{-1, -1, -1, -1}, groupSecs: [2]float64{-1, -1}, downSecs: -1,
		},
		{
			name:   "an election without a lost server is a leader change only",
			sig:    Signals{Servers: true, Elected: []Election{{Key: k("a2"), Leader: "s1", At: ago(4)}}},
			leader: [4]float64{-1, 4, -1, -1}, groupSecs: [2]float64{-1, -1}, downSecs: -1, serverSigns: true,
		},
		{
			name: "a lost server whose consumers were re-elected marks their groups",
			sig: Signals{
				Servers:    true,
				Down:       []ServerDown{{Name: "s3", Since: ago(6), LastHeard: ago(30)}},
				RoutesLost: 2,
				Elected: []Election{
					{Key: k("a1"), Leader: "s1", At: ago(20)}, // after it was last heard: it led a1
					{Key: k("b1"), Leader: "s2", At: ago(40)}, // before: unrelated
					{Key: k("gone"), Leader: "s2", At: ago(1)},
					{Key: k("n1"), Leader: "s2", At: ago(2)}, // no group to mark
				},
			},
			leader:    [4]float64{20, -1, 40, 2},
			groupDown: [2]bool{true, false}, groupSecs: [2]float64{6, -1},
			down: 1, downSecs: 6, routesLost: 2, serverSigns: true,
		},
		{
			name: "of two lost servers the group shows the latest it depended on",
			sig: Signals{
				Servers: true,
				Down: []ServerDown{
					{Name: "s2", Since: ago(50), LastHeard: ago(50), Announced: true},
					{Name: "s3", Since: ago(3), LastHeard: ago(3), Announced: true},
				},
				Elected: []Election{{Key: k("a1"), At: ago(2)}, {Key: k("b1"), At: ago(45)}},
			},
			leader:    [4]float64{2, -1, 45, -1},
			groupDown: [2]bool{true, true}, groupSecs: [2]float64{3, 50},
			down: 2, ann: 2, downSecs: 3, serverSigns: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := fresh()
			// Values left from a previous tick must not survive.
			st.Nodes[0].LeaderChangedSeconds, st.Groups[1].ServerDown = 99, true
			Annotate(st, &tc.sig, now)
			for i, want := range tc.leader {
				if got := st.Nodes[i].LeaderChangedSeconds; got != want {
					t.Errorf("node %s leaderChangedSeconds %v, want %v", st.Nodes[i].Key.Consumer, got, want)
				}
			}
			for i := range st.Groups {
				g := st.Groups[i]
				if g.ServerDown != tc.groupDown[i] || g.ServerDownSeconds != tc.groupSecs[i] {
					t.Errorf("group %s serverDown %v/%v, want %v/%v", g.Name, g.ServerDown, g.ServerDownSeconds, tc.groupDown[i], tc.groupSecs[i])
				}
			}
			s := st.System
			if s.ServersDown != tc.down || s.ServersAnnouncedDown != tc.ann || s.ServerDownSeconds != tc.downSecs || s.RoutesLost != tc.routesLost || s.ServerSignals != tc.serverSigns {
				t.Errorf("system %+v", s)
			}
		})
	}
}
