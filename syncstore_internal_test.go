package ldapauth

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The sync's per-user state finds every stored user by key, and no other,
// at every size around its bucket boundaries.
func TestUserTableFindsEveryKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 17, 1000, 65537} {
		var tab userTable
		want := map[uint64]uint64{}
		add := func(key uint64) {
			if _, dup := want[key]; dup {
				return
			}
			want[key] = rng.Uint64()
			tab.add(storeUser{key: key, fp: want[key]})
		}
		if n > 2 {
			add(0)
			add(math.MaxUint64)
		}
		for len(want) < n {
			add(rng.Uint64())
		}
		require.NoError(t, tab.build())
		require.Equal(t, n, tab.len())
		for key, fp := range want {
			su := tab.get(key)
			if !assert.NotNil(t, su, "n=%d key=%x", n, key) {
				continue
			}
			assert.Equal(t, fp, su.fp)
		}
		for range 1000 {
			key := rng.Uint64()
			if _, ok := want[key]; !ok {
				assert.Nil(t, tab.get(key), "n=%d: a key never added is not found", n)
			}
		}
		prev, count := uint64(0), 0
		for su := range tab.all() {
			assert.True(t, count == 0 || su.key > prev, "all yields in key order")
			prev = su.key
			count++
		}
		assert.Equal(t, n, count)
	}
}

// Two rows of one key are refused: the run loads the store again under
// another seed rather than take one user for another.
func TestUserTableRefusesSharedKey(t *testing.T) {
	var tab userTable
	tab.add(storeUser{key: 7, fp: 1})
	tab.add(storeUser{key: 9})
	tab.add(storeUser{key: 7, fp: 2})
	assert.ErrorIs(t, tab.build(), errKeyCollision)
}

// The set of directory usernames the store lacks answers as a map would,
// across its growth, the key 0 included.
func TestKeySetIsASet(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var s keySet
	want := map[uint64]bool{}
	keys := []uint64{0, 1, math.MaxUint64}
	for range 20000 {
		keys = append(keys, rng.Uint64(), rng.Uint64()&0xffff) // small keys collide in the low bits
	}
	for _, k := range keys {
		assert.Equal(t, want[k], s.has(k))
		assert.Equal(t, want[k], s.add(k), "add reports a key already there")
		want[k] = true
		assert.True(t, s.has(k))
	}
	for k := range want {
		assert.True(t, s.has(k))
	}
	for range 10000 {
		if k := rng.Uint64(); !want[k] {
			assert.False(t, s.has(k))
		}
	}
}
