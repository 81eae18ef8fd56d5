/* _cachecore: the entry store behind ManagedCache (hash table, recency list, expiry queues, counters).
 *
 * Why C: a Python record per entry plus an OrderedDict costs ~250 bytes and ~2x the time of a
 * bare locked OrderedDict; here an entry is one 104-byte struct and a hit is one C call.
 *
 * Thread safety without a lock of its own: every method runs holding the GIL, and the GIL can only
 * change hands where Python code runs. The rule of this file: no Python code runs while the
 * structure is inconsistent, and every read of the structure made before Python could run is
 * made again after it. Python code can run wherever an object is hashed or compared, a clock or
 * __index__/__float__ is called, a reference is dropped (finalizers), or a GC-tracked object is
 * allocated (a list, a tuple: the allocation may start a collection, which runs finalizers and
 * gc.callbacks, and those may switch threads or call into this cache). So: the key's hash and
 * the clock are read before anything changes; removed entries are parked on a local chain and
 * become Python objects only once the structure is whole again; a lookup that had to call a
 * key's __eq__ starts over if the table changed meanwhile (as in a dict); snapshots (keys, items)
 * allocate their lists first and then walk the structure as it is after the allocation, growing
 * the lists without allocating GC-tracked objects if it grew. The sanitizer step of .ci/run
 * (scripts/sanitize) runs the cache tests, GC chaos included, under ASan and UBSan.
 *
 * Time never goes back: a clock reading below the last one is held at the last one (and counted
 * in clock_regressions), so put order stays expiry order for default-TTL entries whatever the
 * clock does.
 *
 * Free-threaded builds: the module declares that it needs the GIL (Py_MOD_GIL_USED), so
 * importing it on a free-threaded interpreter turns the GIL on, deliberately; ManagedCache
 * chooses the pure-Python store there by default.
 *
 * Layout: open addressing with linear probing over Entry pointers (Fibonacci hashing spreads the
 * structured integer keys trading code uses, such as candle open times), backward-shift deletion
 * (no tombstones). Recency is a circular doubly linked list, least recently used first.
 * Default-TTL entries expire in put order, so a put-order list of them is already sorted by
 * expiry; entries with their own TTL sit in a min-heap on expiry (and in a put-order list of
 * their own, for the oldest timestamp). Removal from each structure is O(1) or O(log n).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

enum { CAUSE_EXPIRED, CAUSE_SIZE, CAUSE_PRESSURE, CAUSE_EXPLICIT, CAUSE_REPLACED, CAUSE_COUNT };

#define MIN_LOG2_SLOTS 3
#define MIN_HEAP_CAPACITY 16
#define FIBONACCI_MULTIPLIER 0x9E3779B97F4A7C15ULL

typedef struct Link {
    struct Link *prev, *next;
} Link;

typedef struct Entry {
    Link recency;   /* in CacheCore.recency; once removed, .next chains the caller's removed entries */
    Link queue;     /* in default_queue or custom_queue, put order */
    PyObject *key;
    PyObject *value;
    Py_hash_t hash;
    double timestamp;      /* put time on the cache's clock */
    double expires;        /* timestamp + ttl; +inf without a ttl */
    double last_accessed;
    long long size;
    unsigned long long access_count;  /* get hits */
    int32_t heap_pos;      /* index in the custom-TTL heap; -1 for default-TTL entries */
    int32_t cause;         /* why it left, once removed */
} Entry;

#define ENTRY_OF(link, field) ((Entry *)((char *)(link) - offsetof(Entry, field)))

typedef struct {
    PyObject_HEAD
    Entry **slots;
    size_t mask;              /* slot count - 1; the slot count is a power of two */
    int shift;                /* 64 - log2(slot count) */
    Py_ssize_t used;
    uint64_t version;         /* bumped whenever the table's membership or layout changes */
    Link recency;             /* .next: least recently used; .prev: most recently used */
    Link default_queue;       /* default-TTL entries, put order = expiry order */
    Link custom_queue;        /* per-entry-TTL entries, put order */
    Entry **heap;             /* per-entry-TTL entries, min-heap on expires */
    Py_ssize_t heap_len, heap_capacity;
    PyObject *clock;
    PyObject *causes[CAUSE_COUNT];
    Py_ssize_t max_size;
    long long max_bytes;      /* -1: no byte budget */
    double ttl;               /* default ttl; +inf: none */
    double last_now;          /* the latest clock reading; time is held here if the clock goes back */
    unsigned long long clock_regressions;  /* readings that were below last_now */
    long long total_bytes;
    unsigned long long hits, misses, puts, evictions[CAUSE_COUNT];
    unsigned long long expiry_checks;  /* entries looked at by expiry sweeps: shows their cost is what expired */
} CacheCore;

/* Entries taken out of the structure by one call, in removal order, chained through recency.next. */
typedef struct {
    Entry *head, *tail;
    Py_ssize_t count;
    long long bytes;
} Removed;

static PyObject *notify_name;    /* "_notify": the subclass hook that hands removals to listeners */
static PyObject *default_clock;  /* time.monotonic */

/* ------------------------------------------------------------------ lists */

static inline void link_init(Link *sentinel) { sentinel->prev = sentinel->next = sentinel; }

static inline void link_append(Link *sentinel, Link *link)
{
    link->prev = sentinel->prev;
    link->next = sentinel;
    sentinel->prev->next = link;
    sentinel->prev = link;
}

static inline void link_unlink(Link *link)
{
    link->prev->next = link->next;
    link->next->prev = link->prev;
}

static inline int link_empty(const Link *sentinel) { return sentinel->next == sentinel; }

/* ------------------------------------------------------------------ table */

static inline size_t home_slot(const CacheCore *self, Py_hash_t hash)
{
    return (size_t)(((uint64_t)hash * FIBONACCI_MULTIPLIER) >> self->shift);
}

static size_t free_slot(const CacheCore *self, Py_hash_t hash)
{
    size_t i = home_slot(self, hash);
    while (self->slots[i] != NULL) {
        i = (i + 1) & self->mask;
    }
    return i;
}

/* Smallest table that holds `count` entries at most one third full (room to grow before the next rehash). */
static int fitting_log2(Py_ssize_t count)
{
    int log2 = MIN_LOG2_SLOTS;
    while (((size_t)1 << log2) < (size_t)count * 3) {
        log2++;
    }
    return log2;
}

static int table_rehash(CacheCore *self, int log2)
{
    size_t count = (size_t)1 << log2;
    Entry **slots = PyMem_Calloc(count, sizeof(Entry *));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Entry **old = self->slots;
    size_t old_count = old == NULL ? 0 : self->mask + 1;
    self->slots = slots;
    self->mask = count - 1;
    self->shift = 64 - log2;
    for (size_t i = 0; i < old_count; i++) {
        if (old[i] != NULL) {
            slots[free_slot(self, old[i]->hash)] = old[i];
        }
    }
    PyMem_Free(old);
    self->version++;
    return 0;
}

/* Grow so that one more entry keeps the table at most two thirds full. */
static int table_reserve_one(CacheCore *self)
{
    size_t count = self->mask + 1;
    if ((size_t)(self->used + 1) * 3 <= count * 2) {
        return 0;
    }
    return table_rehash(self, 64 - self->shift + 1);
}

/* 1 and *found when `key` is present, 0 when absent, -1 when a key's __eq__ raised. */
static int table_find(CacheCore *self, PyObject *key, Py_hash_t hash, Entry **found)
{
restart:;
    uint64_t version = self->version;
    size_t i = home_slot(self, hash);
    Entry *entry;
    while ((entry = self->slots[i]) != NULL) {
        if (entry->key == key) {
            *found = entry;
            return 1;
        }
        if (entry->hash == hash) {
            PyObject *candidate = Py_NewRef(entry->key);
            int equal = PyObject_RichCompareBool(candidate, key, Py_EQ);
            Py_DECREF(candidate);
            if (equal < 0) {
                return -1;
            }
            if (self->version != version) {
                goto restart;
            }
            if (equal) {
                *found = entry;
                return 1;
            }
        }
        i = (i + 1) & self->mask;
    }
    return 0;
}

static void table_insert(CacheCore *self, Entry *entry)
{
    self->slots[free_slot(self, entry->hash)] = entry;
    self->used++;
    self->version++;
}

static void table_remove(CacheCore *self, Entry *entry)
{
    Entry **slots = self->slots;
    size_t mask = self->mask;
    size_t hole = home_slot(self, entry->hash);
    while (slots[hole] != entry) {
        hole = (hole + 1) & mask;
    }
    for (size_t i = (hole + 1) & mask; slots[i] != NULL; i = (i + 1) & mask) {
        /* slots[i] may fill the hole unless its home lies cyclically in (hole, i] */
        size_t from_home = (i - home_slot(self, slots[i]->hash)) & mask;
        if (from_home >= ((i - hole) & mask)) {
            slots[hole] = slots[i];
            hole = i;
        }
    }
    slots[hole] = NULL;
    self->used--;
    self->version++;
}

/* ------------------------------------------------------------------- heap */

static inline void heap_place(CacheCore *self, Py_ssize_t index, Entry *entry)
{
    self->heap[index] = entry;
    entry->heap_pos = (int32_t)index;
}

static void heap_sift_up(CacheCore *self, Py_ssize_t index)
{
    Entry *entry = self->heap[index];
    while (index > 0) {
        Py_ssize_t parent = (index - 1) / 2;
        if (self->heap[parent]->expires <= entry->expires) {
            break;
        }
        heap_place(self, index, self->heap[parent]);
        index = parent;
    }
    heap_place(self, index, entry);
}

static void heap_sift_down(CacheCore *self, Py_ssize_t index)
{
    Entry *entry = self->heap[index];
    for (;;) {
        Py_ssize_t child = 2 * index + 1;
        if (child >= self->heap_len) {
            break;
        }
        if (child + 1 < self->heap_len && self->heap[child + 1]->expires < self->heap[child]->expires) {
            child++;
        }
        if (entry->expires <= self->heap[child]->expires) {
            break;
        }
        heap_place(self, index, self->heap[child]);
        index = child;
    }
    heap_place(self, index, entry);
}

static int heap_resize(CacheCore *self, Py_ssize_t capacity)
{
    Entry **heap = PyMem_Realloc(self->heap, (size_t)capacity * sizeof(Entry *));
    if (heap == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->heap = heap;
    self->heap_capacity = capacity;
    return 0;
}

static int heap_reserve_one(CacheCore *self)
{
    if (self->heap_len < self->heap_capacity) {
        return 0;
    }
    if (self->heap_len >= INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "too many entries with their own ttl_seconds");
        return -1;
    }
    return heap_resize(self, self->heap_capacity ? self->heap_capacity * 2 : MIN_HEAP_CAPACITY);
}

static void heap_push(CacheCore *self, Entry *entry)
{
    heap_place(self, self->heap_len++, entry);
    heap_sift_up(self, entry->heap_pos);
}

static void heap_remove(CacheCore *self, Entry *entry)
{
    Py_ssize_t index = entry->heap_pos;
    Entry *last = self->heap[--self->heap_len];
    if (last != entry) {
        heap_place(self, index, last);
        heap_sift_up(self, index);
        heap_sift_down(self, last->heap_pos);
    }
    entry->heap_pos = -1;
}

/* ------------------------------------------------------------ structure */

/* Take `entry` out of every structure and account for it; it joins `removed`, still owning its references. */
static void detach(CacheCore *self, Entry *entry, int cause, Removed *removed)
{
    table_remove(self, entry);
    link_unlink(&entry->recency);
    link_unlink(&entry->queue);
    if (entry->heap_pos >= 0) {
        heap_remove(self, entry);
    }
    self->total_bytes -= entry->size;
    self->evictions[cause]++;
    entry->cause = cause;
    entry->recency.next = NULL;
    if (removed->tail != NULL) {
        removed->tail->recency.next = &entry->recency;
    }
    else {
        removed->head = entry;
    }
    removed->tail = entry;
    removed->count++;
    removed->bytes += entry->size;
}

static inline Entry *removed_next(const Entry *entry)
{
    return entry->recency.next == NULL ? NULL : ENTRY_OF(entry->recency.next, recency);
}

static inline Entry *coldest(const CacheCore *self)
{
    return link_empty(&self->recency) ? NULL : ENTRY_OF(self->recency.next, recency);
}

/* Free removed entries; a list of (key, value, cause) triples in removal order, or None if nothing was removed. */
static PyObject *removed_release(CacheCore *self, Removed *removed)
{
    if (removed->count == 0) {
        Py_RETURN_NONE;
    }
    PyObject *list = PyList_New(removed->count);
    Py_ssize_t index = 0;
    Entry *entry = removed->head;
    while (entry != NULL) {
        Entry *next = removed_next(entry);
        if (list != NULL) {
            PyObject *cause = self->causes[entry->cause] != NULL ? self->causes[entry->cause] : Py_None;
            PyObject *triple = PyTuple_Pack(3, entry->key, entry->value, cause);
            if (triple == NULL) {
                Py_CLEAR(list);
            }
            else {
                PyList_SET_ITEM(list, index++, triple);
            }
        }
        Py_DECREF(entry->key);
        Py_DECREF(entry->value);
        PyMem_Free(entry);
        entry = next;
    }
    removed->head = removed->tail = NULL;
    removed->count = 0;
    return list;
}

/* (bytes freed, removed triples or None): for the calls whose callers report what they freed. */
static PyObject *removed_release_with_bytes(CacheCore *self, Removed *removed)
{
    long long bytes = removed->bytes;
    PyObject *list = removed_release(self, removed);
    return list == NULL ? NULL : Py_BuildValue("(LN)", bytes, list);
}

/* Give back table and heap memory after bulk removals; a failed allocation keeps the larger one. */
static void shrink_storage(CacheCore *self)
{
    int log2 = fitting_log2(self->used);
    if (log2 < 64 - self->shift - 2 && table_rehash(self, log2) < 0) {
        PyErr_Clear();
    }
    if (self->heap_capacity > MIN_HEAP_CAPACITY && self->heap_len * 4 < self->heap_capacity &&
        heap_resize(self, self->heap_capacity / 2) < 0) {
        PyErr_Clear();
    }
}

static void expire_due(CacheCore *self, double now, Removed *removed)
{
    while (!link_empty(&self->default_queue)) {
        Entry *entry = ENTRY_OF(self->default_queue.next, queue);
        self->expiry_checks++;
        if (now < entry->expires) {
            break;
        }
        detach(self, entry, CAUSE_EXPIRED, removed);
    }
    while (self->heap_len > 0) {
        self->expiry_checks++;
        if (self->heap[0]->expires > now) {
            break;
        }
        detach(self, self->heap[0], CAUSE_EXPIRED, removed);
    }
}

static inline int over_limits(const CacheCore *self)
{
    return self->used > self->max_size || (self->max_bytes >= 0 && self->total_bytes > self->max_bytes);
}

static void evict_over_limits(CacheCore *self, Removed *removed)
{
    Entry *entry;
    while (over_limits(self) && (entry = coldest(self)) != NULL) {
        detach(self, entry, CAUSE_SIZE, removed);
    }
}

/* Empty every structure; the entries join `removed`. */
static void take_all(CacheCore *self, int cause, Removed *removed)
{
    Entry *entry;
    while ((entry = coldest(self)) != NULL) {
        detach(self, entry, cause, removed);
    }
}

/* ---------------------------------------------------------------- helpers */

static Py_hash_t hash_key(PyObject *key)
{
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1 && PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "cache keys must be hashable; got an unhashable %s", Py_TYPE(key)->tp_name);
    }
    return hash;
}

static int expect_args(const char *signature, Py_ssize_t nargs, Py_ssize_t expected)
{
    if (nargs == expected) {
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s takes %zd arguments, got %zd", signature, expected, nargs);
    return -1;
}

static int read_clock(CacheCore *self, double *now)
{
    if (self->clock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the cache has been cleared by the garbage collector");
        return -1;
    }
    PyObject *reading = PyObject_CallNoArgs(self->clock);
    if (reading == NULL) {
        return -1;
    }
    double value = PyFloat_CheckExact(reading) ? PyFloat_AS_DOUBLE(reading) : PyFloat_AsDouble(reading);
    Py_DECREF(reading);
    if (value == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (isnan(value)) {
        PyErr_SetString(PyExc_ValueError, "the cache clock returned NaN");
        return -1;
    }
    if (value < self->last_now) {
        self->clock_regressions++;
        value = self->last_now;
    }
    self->last_now = value;
    *now = value;
    return 0;
}

static int cause_code(CacheCore *self, PyObject *cause)
{
    for (int code = 0; code < CAUSE_COUNT; code++) {
        if (self->causes[code] == cause) {
            return code;
        }
    }
    PyErr_Format(PyExc_ValueError, "unknown removal cause %R", cause);
    return -1;
}

/* Hand removals to the subclass's _notify hook; steals `removed`. */
static int notify(CacheCore *self, PyObject *removed)
{
    if (removed == Py_None) {
        Py_DECREF(removed);
        return 0;
    }
    PyObject *result = PyObject_CallMethodOneArg((PyObject *)self, notify_name, removed);
    Py_DECREF(removed);
    Py_XDECREF(result);
    return result == NULL ? -1 : 0;
}

static PyObject *optional_double(double value)
{
    if (isinf(value)) {
        Py_RETURN_NONE;
    }
    return PyFloat_FromDouble(value);
}

/* Hash `key`, read the clock, then look the key up: in that order, because hashing and the clock
 * may run Python code, which must happen before the caller starts changing anything. A key's
 * __eq__ may have read the clock again (a nested call), so `now` is raised to the latest reading:
 * entries put later never carry an earlier timestamp.
 * 1 and *entry when present, 0 when absent, -1 with an exception set. */
static int lookup(CacheCore *self, PyObject *key, Py_hash_t *hash, double *now, Entry **entry)
{
    *hash = hash_key(key);
    if (*hash == -1 || read_clock(self, now) < 0) {
        return -1;
    }
    int found = table_find(self, key, *hash, entry);
    *now = fmax(*now, self->last_now);
    return found;
}

/* ---------------------------------------------------------------- methods */

static PyObject *core_get(CacheCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *key = nargs >= 1 ? args[0] : NULL;
    PyObject *default_value = nargs >= 2 ? args[1] : Py_None;
    Py_ssize_t keyword_count = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < keyword_count; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (nargs < 1 && key == NULL && PyUnicode_CompareWithASCIIString(name, "key") == 0) {
            key = args[nargs + i];
        }
        else if (nargs < 2 && PyUnicode_CompareWithASCIIString(name, "default") == 0) {
            default_value = args[nargs + i];
        }
        else {
            PyErr_Format(PyExc_TypeError, "get() got an unexpected or repeated keyword argument %R", name);
            return NULL;
        }
    }
    if (key == NULL || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get() takes a key and an optional default");
        return NULL;
    }
    Py_hash_t hash;
    double now;
    Entry *entry;
    int found = lookup(self, key, &hash, &now, &entry);
    if (found < 0) {
        return NULL;
    }
    if (found && now < entry->expires) {
        link_unlink(&entry->recency);
        link_append(&self->recency, &entry->recency);
        entry->access_count++;
        entry->last_accessed = now;
        self->hits++;
        return Py_NewRef(entry->value);
    }
    self->misses++;
    if (found) {
        Removed removed = {0};
        detach(self, entry, CAUSE_EXPIRED, &removed);
        PyObject *released = removed_release(self, &removed);
        if (released == NULL || notify(self, released) < 0) {
            return NULL;
        }
    }
    return Py_NewRef(default_value);
}

PyDoc_STRVAR(peek_doc, "_peek(key, default) -> the live value for key, or default; no refresh, no stats.");

static PyObject *core_peek(CacheCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (expect_args("_peek(key, default)", nargs, 2) < 0) {
        return NULL;
    }
    Py_hash_t hash;
    double now;
    Entry *entry;
    int found = lookup(self, args[0], &hash, &now, &entry);
    if (found < 0) {
        return NULL;
    }
    return Py_NewRef(found && now < entry->expires ? entry->value : args[1]);
}

static int core_contains(CacheCore *self, PyObject *key)
{
    Py_hash_t hash;
    double now;
    Entry *entry;
    int found = lookup(self, key, &hash, &now, &entry);
    return found <= 0 ? found : now < entry->expires;
}

static Py_ssize_t core_length(CacheCore *self) { return self->used; }

PyDoc_STRVAR(store_doc, "_store(key, value, size, ttl_or_None) -> removed triples or None\n\n"
                        "Insert or replace; then expire what is due and evict least recently used entries over the limits.");

static PyObject *core_store(CacheCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (expect_args("_store(key, value, size, ttl)", nargs, 4) < 0) {
        return NULL;
    }
    PyObject *key = args[0], *value = args[1];
    long long size = PyLong_AsLongLong(args[2]);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (size < 0) {
        PyErr_Format(PyExc_ValueError, "size_bytes must be a non-negative number of bytes, got %lld", size);
        return NULL;
    }
    if (size > LLONG_MAX - self->total_bytes) {
        PyErr_Format(PyExc_OverflowError, "size_bytes=%lld would take the cache past 2**63 bytes", size);
        return NULL;
    }
    double ttl = self->ttl;
    if (args[3] != Py_None) {
        ttl = PyFloat_AsDouble(args[3]);
        if (ttl == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (!(ttl > 0)) {
            PyErr_Format(PyExc_ValueError, "ttl_seconds must be a positive number of seconds, got %R", args[3]);
            return NULL;
        }
    }
    int custom = ttl != self->ttl;
    Py_hash_t hash;
    double now;
    Entry *old;
    int found = lookup(self, key, &hash, &now, &old);
    /* everything that can fail comes before the first change */
    if (found < 0 || table_reserve_one(self) < 0 || (custom && heap_reserve_one(self) < 0)) {
        return NULL;
    }
    Entry *entry = PyMem_Malloc(sizeof(Entry));
    if (entry == NULL) {
        return PyErr_NoMemory();
    }
    Removed removed = {0};
    if (found) {
        detach(self, old, CAUSE_REPLACED, &removed);
    }
    entry->key = Py_NewRef(key);
    entry->value = Py_NewRef(value);
    entry->hash = hash;
    entry->timestamp = entry->last_accessed = now;
    entry->expires = now + ttl;
    entry->size = size;
    entry->access_count = 0;
    entry->heap_pos = -1;
    entry->cause = -1;
    table_insert(self, entry);
    link_append(&self->recency, &entry->recency);
    if (custom) {
        link_append(&self->custom_queue, &entry->queue);
        heap_push(self, entry);
    }
    else {
        link_append(&self->default_queue, &entry->queue);
    }
    self->total_bytes += size;
    self->puts++;
    expire_due(self, now, &removed);
    evict_over_limits(self, &removed);
    return removed_release(self, &removed);
}

PyDoc_STRVAR(take_doc, "_take(key) -> [(key, value, cause)] or None\n\n"
                       "Remove `key` (cause expired if it had expired, else explicit).");

static PyObject *core_take(CacheCore *self, PyObject *key)
{
    Py_hash_t hash;
    double now;
    Entry *entry;
    int found = lookup(self, key, &hash, &now, &entry);
    if (found <= 0) {
        return found < 0 ? NULL : Py_NewRef(Py_None);
    }
    Removed removed = {0};
    detach(self, entry, now < entry->expires ? CAUSE_EXPLICIT : CAUSE_EXPIRED, &removed);
    shrink_storage(self);
    return removed_release(self, &removed);
}

PyDoc_STRVAR(expire_doc, "_expire() -> removed triples or None: remove what has expired, at a cost proportional to it.");

static PyObject *core_expire(CacheCore *self, PyObject *Py_UNUSED(ignored))
{
    double now;
    if (read_clock(self, &now) < 0) {
        return NULL;
    }
    Removed removed = {0};
    expire_due(self, now, &removed);
    shrink_storage(self);
    return removed_release(self, &removed);
}

PyDoc_STRVAR(evict_doc, "_evict(target_bytes, cause) -> (bytes freed, removed triples or None)\n\n"
                        "Remove least recently used entries until at most target_bytes remain (-1: all of them).");

static PyObject *core_evict(CacheCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (expect_args("_evict(target_bytes, cause)", nargs, 2) < 0) {
        return NULL;
    }
    long long target = PyLong_AsLongLong(args[0]);
    int cause = cause_code(self, args[1]);
    if ((target == -1 && PyErr_Occurred()) || cause < 0) {
        return NULL;
    }
    Removed removed = {0};
    Entry *entry;
    while (self->total_bytes > target && (entry = coldest(self)) != NULL) {
        detach(self, entry, cause, &removed);
    }
    shrink_storage(self);
    return removed_release_with_bytes(self, &removed);
}

PyDoc_STRVAR(evict_coldest_doc, "_evict_coldest(cause) -> (bytes freed, removed triples or None): remove the least "
                                "recently used entry.");

static PyObject *core_evict_coldest(CacheCore *self, PyObject *cause_object)
{
    int cause = cause_code(self, cause_object);
    if (cause < 0) {
        return NULL;
    }
    Removed removed = {0};
    Entry *entry = coldest(self);
    if (entry != NULL) {
        detach(self, entry, cause, &removed);
    }
    return removed_release_with_bytes(self, &removed);
}

PyDoc_STRVAR(set_limits_doc, "_set_limits(max_size, max_bytes_or_None) -> (bytes freed, removed triples or None)\n\n"
                             "Change the limits and evict least recently used entries until they hold.");

static PyObject *core_set_limits(CacheCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (expect_args("_set_limits(max_size, max_bytes)", nargs, 2) < 0) {
        return NULL;
    }
    Py_ssize_t max_size = PyLong_AsSsize_t(args[0]);
    long long max_bytes = args[1] == Py_None ? -1 : PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (max_size < 1 || (args[1] != Py_None && max_bytes < 1)) {
        PyErr_SetString(PyExc_ValueError, "max_size and max_bytes must be positive");
        return NULL;
    }
    self->max_size = max_size;
    self->max_bytes = max_bytes;
    Removed removed = {0};
    evict_over_limits(self, &removed);
    shrink_storage(self);
    return removed_release_with_bytes(self, &removed);
}

/* Lists of the keys (and, when `values` is given, the values) of entries unexpired at `now`, least
 * recently used first. The lists are allocated first, sized for the entries counted then; the
 * allocations may run Python code that changes the cache, so the walk reads the structure only
 * afterwards, fills the slots it has, appends (no GC-tracked allocation) if the cache grew and
 * trims the lists if it shrank or entries had expired. */
static int collect(CacheCore *self, double now, PyObject **keys, PyObject **values)
{
    Py_ssize_t capacity = self->used, count = 0;
    PyObject *value_list = NULL;
    *keys = PyList_New(capacity);
    if (*keys == NULL || (values != NULL && (value_list = PyList_New(capacity)) == NULL)) {
        goto fail;
    }
    /* from here on nothing runs Python code until the walk ends */
    for (Link *link = self->recency.next; link != &self->recency; link = link->next) {
        Entry *entry = ENTRY_OF(link, recency);
        if (!(now < entry->expires)) {
            continue;
        }
        if (count < capacity) {
            PyList_SET_ITEM(*keys, count, Py_NewRef(entry->key));
            if (value_list != NULL) {
                PyList_SET_ITEM(value_list, count, Py_NewRef(entry->value));
            }
        }
        else if (PyList_Append(*keys, entry->key) < 0 ||  /* grows by PyMem_Realloc: no GC-tracked allocation */
                 (value_list != NULL && PyList_Append(value_list, entry->value) < 0)) {
            goto fail;
        }
        count++;
    }
    if (count < capacity) {
        /* the slots past `count` were never filled (NULL): dropping them from the size frees nothing */
        Py_SET_SIZE(*keys, count);
        if (value_list != NULL) {
            Py_SET_SIZE(value_list, count);
        }
    }
    if (values != NULL) {
        *values = value_list;
    }
    return 0;
fail:
    Py_CLEAR(*keys);
    Py_XDECREF(value_list);
    return -1;
}

PyDoc_STRVAR(keys_doc, "_keys(live_only) -> keys, least recently used first (live_only: unexpired ones).");

static PyObject *core_keys(CacheCore *self, PyObject *live_only_object)
{
    int live_only = PyObject_IsTrue(live_only_object);
    double now = -INFINITY;
    PyObject *keys;
    if (live_only < 0 || (live_only && read_clock(self, &now) < 0) || collect(self, now, &keys, NULL) < 0) {
        return NULL;
    }
    return keys;
}

PyDoc_STRVAR(items_doc, "_items() -> [(key, value)] of unexpired entries, least recently used first.");

static PyObject *core_items(CacheCore *self, PyObject *Py_UNUSED(ignored))
{
    double now;
    PyObject *keys, *values;
    if (read_clock(self, &now) < 0 || collect(self, now, &keys, &values) < 0) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(keys);
    PyObject *items = PyList_New(count);
    for (Py_ssize_t i = 0; items != NULL && i < count; i++) {
        PyObject *pair = PyTuple_Pack(2, PyList_GET_ITEM(keys, i), PyList_GET_ITEM(values, i));
        if (pair == NULL) {
            Py_CLEAR(items);
        }
        else {
            PyList_SET_ITEM(items, i, pair);
        }
    }
    Py_DECREF(keys);
    Py_DECREF(values);
    return items;
}

PyDoc_STRVAR(entry_doc, "_entry(key) -> (value, size_bytes, timestamp, last_accessed, access_count) or None; no refresh.");

static PyObject *core_entry(CacheCore *self, PyObject *key)
{
    Py_hash_t hash = hash_key(key);
    Entry *entry;
    if (hash == -1) {
        return NULL;
    }
    int found = table_find(self, key, hash, &entry);
    if (found <= 0) {
        return found < 0 ? NULL : Py_NewRef(Py_None);
    }
    /* copy first: building the tuple allocates, and the entry may be gone after that */
    PyObject *value = Py_NewRef(entry->value);
    long long size = entry->size;
    double timestamp = entry->timestamp, last_accessed = entry->last_accessed;
    unsigned long long access_count = entry->access_count;
    PyObject *fields = Py_BuildValue("(OLddK)", value, size, timestamp, last_accessed, access_count);
    Py_DECREF(value);
    return fields;
}

PyDoc_STRVAR(counters_doc, "_counters() -> (hits, misses, puts, evictions by cause code, entries, total_bytes, "
                           "oldest timestamp or None), one consistent snapshot.");

static PyObject *core_counters(CacheCore *self, PyObject *Py_UNUSED(ignored))
{
    double oldest = INFINITY;
    if (!link_empty(&self->default_queue)) {
        oldest = ENTRY_OF(self->default_queue.next, queue)->timestamp;
    }
    if (!link_empty(&self->custom_queue)) {
        oldest = fmin(oldest, ENTRY_OF(self->custom_queue.next, queue)->timestamp);
    }
    /* every field is read into a C value before the first allocation */
    CacheCore snapshot = *self;
    return Py_BuildValue("(KKK(KKKKK)nLN)", snapshot.hits, snapshot.misses, snapshot.puts, snapshot.evictions[0],
                         snapshot.evictions[1], snapshot.evictions[2], snapshot.evictions[3], snapshot.evictions[4],
                         snapshot.used, snapshot.total_bytes, optional_double(oldest));
}

static PyObject *core_coldest_access_time(CacheCore *self, PyObject *Py_UNUSED(ignored))
{
    Entry *cold = coldest(self);
    return optional_double(cold == NULL ? INFINITY : cold->last_accessed);
}

/* Count the entries on a put-order list, checking their heap membership and that timestamps never
 * go back along it (for the default queue that is expiry order); -1 when broken. */
static Py_ssize_t verify_queue(const CacheCore *self, const Link *sentinel, int custom)
{
    Py_ssize_t count = 0;
    double previous = -INFINITY;
    for (const Link *link = sentinel->next; link != sentinel; link = link->next, count++) {
        const Entry *entry = ENTRY_OF(link, queue);
        int in_heap = entry->heap_pos >= 0 && entry->heap_pos < self->heap_len && self->heap[entry->heap_pos] == entry;
        if (link->next->prev != link || count > self->used || in_heap != custom || (!custom && entry->heap_pos != -1) ||
            entry->timestamp < previous) {
            return -1;
        }
        previous = entry->timestamp;
    }
    return count;
}

/* The first broken invariant of the store, or NULL when it is intact. */
static const char *broken_invariant(const CacheCore *self)
{
    Py_ssize_t listed = 0, slotted = 0;
    long long bytes = 0;
    for (const Link *link = self->recency.next; link != &self->recency; link = link->next) {
        const Entry *entry = ENTRY_OF(link, recency);
        size_t i = home_slot(self, entry->hash);
        while (self->slots[i] != NULL && self->slots[i] != entry) {
            i = (i + 1) & self->mask;
        }
        if (link->next->prev != link || ++listed > self->used) {
            return "the recency list is not a proper list of the entries";
        }
        if (self->slots[i] != entry) {
            return "an entry cannot be reached from its home slot";
        }
        bytes += entry->size;
    }
    for (size_t i = 0; i <= self->mask; i++) {
        slotted += self->slots[i] != NULL;
    }
    if (listed != self->used || slotted != self->used) {
        return "the entry count, the table and the recency list disagree";
    }
    if (bytes != self->total_bytes) {
        return "total_bytes is not the sum of the entry sizes";
    }
    for (Py_ssize_t i = 1; i < self->heap_len; i++) {
        if (self->heap[(i - 1) / 2]->expires > self->heap[i]->expires) {
            return "the expiry heap is out of order";
        }
    }
    Py_ssize_t default_count = verify_queue(self, &self->default_queue, 0);
    Py_ssize_t custom_count = verify_queue(self, &self->custom_queue, 1);
    if (default_count < 0 || custom_count < 0 || default_count + custom_count != self->used ||
        custom_count != self->heap_len) {
        return "the expiry queues do not hold each entry once, in put order";
    }
    if (over_limits(self)) {
        return "the cache is over its limits";
    }
    return NULL;
}

PyDoc_STRVAR(verify_doc, "_verify() -> None; raises AssertionError naming the first broken invariant of the store.");

static PyObject *core_verify(CacheCore *self, PyObject *Py_UNUSED(ignored))
{
    const char *broken = broken_invariant(self);
    if (broken != NULL) {
        PyErr_SetString(PyExc_AssertionError, broken);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* --------------------------------------------------------------- lifecycle */

static PyObject *core_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    CacheCore *self = (CacheCore *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    link_init(&self->recency);
    link_init(&self->default_queue);
    link_init(&self->custom_queue);
    self->clock = Py_NewRef(default_clock);
    self->max_size = PY_SSIZE_T_MAX;
    self->max_bytes = -1;
    self->ttl = INFINITY;
    self->last_now = -INFINITY;
    if (table_rehash(self, MIN_LOG2_SLOTS) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int core_init(CacheCore *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"max_size", "max_bytes", "ttl_seconds", "clock", "causes", NULL};
    Py_ssize_t max_size;
    PyObject *max_bytes_object, *ttl_object, *clock, *causes;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "nOOOO!:CacheCore", keywords, &max_size, &max_bytes_object,
                                     &ttl_object, &clock, &PyTuple_Type, &causes)) {
        return -1;
    }
    long long max_bytes = max_bytes_object == Py_None ? -1 : PyLong_AsLongLong(max_bytes_object);
    double ttl = ttl_object == Py_None ? INFINITY : PyFloat_AsDouble(ttl_object);
    if (PyErr_Occurred()) {
        return -1;
    }
    if (max_size < 1 || (max_bytes_object != Py_None && max_bytes < 1) || !(ttl > 0)) {
        PyErr_SetString(PyExc_ValueError, "max_size, max_bytes and ttl_seconds must be positive");
        return -1;
    }
    if (!PyCallable_Check(clock) || PyTuple_GET_SIZE(causes) != CAUSE_COUNT) {
        PyErr_SetString(PyExc_TypeError, "clock must be callable and causes a tuple of 5 removal causes");
        return -1;
    }
    if (self->used > 0) {
        PyErr_SetString(PyExc_RuntimeError, "a cache can only be configured while empty");
        return -1;
    }
    /* the old references are dropped (which may run Python code) only once every field is set */
    PyObject *old[1 + CAUSE_COUNT] = {self->clock};
    self->max_size = max_size;
    self->max_bytes = max_bytes;
    self->ttl = ttl;
    self->last_now = -INFINITY;  /* a new clock starts its own time; the store is empty */
    self->clock = Py_NewRef(clock);
    for (int code = 0; code < CAUSE_COUNT; code++) {
        old[1 + code] = self->causes[code];
        self->causes[code] = Py_NewRef(PyTuple_GET_ITEM(causes, code));
    }
    for (int i = 0; i < 1 + CAUSE_COUNT; i++) {
        Py_XDECREF(old[i]);
    }
    return 0;
}

static int core_traverse(CacheCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->clock);
    for (int code = 0; code < CAUSE_COUNT; code++) {
        Py_VISIT(self->causes[code]);
    }
    for (Link *link = self->recency.next; link != &self->recency; link = link->next) {
        Entry *entry = ENTRY_OF(link, recency);
        Py_VISIT(entry->key);
        Py_VISIT(entry->value);
    }
    return 0;
}

static void discard_all(CacheCore *self)
{
    Removed removed = {0};
    take_all(self, CAUSE_EXPLICIT, &removed);
    for (Entry *entry = removed.head, *next; entry != NULL; entry = next) {
        next = removed_next(entry);
        Py_DECREF(entry->key);
        Py_DECREF(entry->value);
        PyMem_Free(entry);
    }
}

static int core_clear(CacheCore *self)
{
    discard_all(self);
    Py_CLEAR(self->clock);
    for (int code = 0; code < CAUSE_COUNT; code++) {
        Py_CLEAR(self->causes[code]);
    }
    return 0;
}

static void core_dealloc(CacheCore *self)
{
    PyObject_GC_UnTrack(self);
    core_clear(self);
    PyMem_Free(self->slots);
    PyMem_Free(self->heap);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ------------------------------------------------------------------ type */

static PyObject *get_total_bytes(CacheCore *self, void *Py_UNUSED(closure)) { return PyLong_FromLongLong(self->total_bytes); }

static PyObject *get_max_size(CacheCore *self, void *Py_UNUSED(closure)) { return PyLong_FromSsize_t(self->max_size); }

static PyObject *get_max_bytes(CacheCore *self, void *Py_UNUSED(closure))
{
    return self->max_bytes < 0 ? Py_NewRef(Py_None) : PyLong_FromLongLong(self->max_bytes);
}

static PyObject *get_expiry_checks(CacheCore *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->expiry_checks);
}

static PyObject *get_ttl_seconds(CacheCore *self, void *Py_UNUSED(closure)) { return optional_double(self->ttl); }

static PyObject *get_clock_regressions(CacheCore *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->clock_regressions);
}

static PyGetSetDef core_getset[] = {
    {"total_bytes", (getter)get_total_bytes, NULL, "Bytes charged for the entries held.", NULL},
    {"max_size", (getter)get_max_size, NULL, "Entry cap (change with resize).", NULL},
    {"max_bytes", (getter)get_max_bytes, NULL, "Byte budget or None (change with resize).", NULL},
    {"ttl_seconds", (getter)get_ttl_seconds, NULL, "Default time to live in seconds, or None.", NULL},
    {"expiry_checks", (getter)get_expiry_checks, NULL, "Entries looked at by expiry sweeps so far.", NULL},
    {"clock_regressions", (getter)get_clock_regressions, NULL,
     "Clock readings below an earlier one (the store held its time at the earlier one).", NULL},
    {NULL},
};

PyDoc_STRVAR(get_doc, "get(key, default=None)\n\nThe value for `key`, marked most recently used; `default` on a miss.");

static PyMethodDef core_methods[] = {
    {"get", (PyCFunction)(void (*)(void))core_get, METH_FASTCALL | METH_KEYWORDS, get_doc},
    {"coldest_access_time", (PyCFunction)core_coldest_access_time, METH_NOARGS,
     "Last access time of the least recently used entry, or None when empty."},
    {"_store", (PyCFunction)(void (*)(void))core_store, METH_FASTCALL, store_doc},
    {"_peek", (PyCFunction)(void (*)(void))core_peek, METH_FASTCALL, peek_doc},
    {"_take", (PyCFunction)core_take, METH_O, take_doc},
    {"_expire", (PyCFunction)core_expire, METH_NOARGS, expire_doc},
    {"_evict", (PyCFunction)(void (*)(void))core_evict, METH_FASTCALL, evict_doc},
    {"_evict_coldest", (PyCFunction)core_evict_coldest, METH_O, evict_coldest_doc},
    {"_set_limits", (PyCFunction)(void (*)(void))core_set_limits, METH_FASTCALL, set_limits_doc},
    {"_keys", (PyCFunction)core_keys, METH_O, keys_doc},
    {"_items", (PyCFunction)core_items, METH_NOARGS, items_doc},
    {"_entry", (PyCFunction)core_entry, METH_O, entry_doc},
    {"_counters", (PyCFunction)core_counters, METH_NOARGS, counters_doc},
    {"_verify", (PyCFunction)core_verify, METH_NOARGS, verify_doc},
    {NULL},
};

static PySequenceMethods core_as_sequence = {
    .sq_length = (lenfunc)core_length,
    .sq_contains = (objobjproc)core_contains,
};

PyDoc_STRVAR(core_doc, "CacheCore(max_size, max_bytes, ttl_seconds, clock, causes)\n\n"
                       "The entry store behind ManagedCache: LRU + TTL + byte accounting + counters. "
                       "Subclasses provide _notify(removed) for removals found by get.");

static PyTypeObject CacheCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "crypto_bot.memory._cachecore.CacheCore",
    .tp_basicsize = sizeof(CacheCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = core_doc,
    .tp_new = core_new,
    .tp_init = (initproc)core_init,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_methods = core_methods,
    .tp_getset = core_getset,
    .tp_as_sequence = &core_as_sequence,
};

static struct PyModuleDef cachecore_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "crypto_bot.memory._cachecore",
    .m_doc = "The C entry store behind crypto_bot.memory.ManagedCache.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__cachecore(void)
{
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL) {
        return NULL;
    }
    default_clock = PyObject_GetAttrString(time_module, "monotonic");
    Py_DECREF(time_module);
    notify_name = PyUnicode_InternFromString("_notify");
    if (default_clock == NULL || notify_name == NULL || PyType_Ready(&CacheCoreType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&cachecore_module);
    if (module == NULL) {
        return NULL;
    }
#ifdef Py_GIL_DISABLED
    /* Deliberate: every call's atomicity rests on the GIL (see the header), so this module keeps it on. */
    if (PyUnstable_Module_SetGIL(module, Py_MOD_GIL_USED) < 0) {
        Py_DECREF(module);
        return NULL;
    }
#endif
    if (PyModule_AddObjectRef(module, "CacheCore", (PyObject *)&CacheCoreType) < 0 ||
        PyModule_AddIntConstant(module, "ENTRY_BYTES", (long)sizeof(Entry)) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
