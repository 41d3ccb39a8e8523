//! The Lua scripts the store runs on the Redis server, each one atomic, and
//! the ACL rules that cover every command they and the store send.

/// The commands the store runs, inside its scripts and out, as Redis ACL
/// rules: `+get +set +pttl +del +eval +evalsha`. A user limited to these
/// (and to the store's key prefix) can do everything the store needs.
pub const ACL_COMMANDS: &str = "+get +set +pttl +del +eval +evalsha";

/// The start of every script: `get(key)` answers the value (false when
/// missing) and whether the key holds another type (garbage), and raises any
/// other error, such as a command the ACL refuses, to the caller, so that it
/// is reported instead of taken for garbage.
macro_rules! with_get {
    ($body:literal) => {
        concat!(
            r"
local function get(key)
  local value = redis.pcall('GET', key)
  if type(value) == 'table' then
    if string.sub(value['err'], 1, 9) == 'WRONGTYPE' then return false, true end
    error(value)
  end
  return value, false
end
",
            $body
        )
    };
}

/// Reads the value, its TTL and the lease's TTL, in one round trip.
/// A value of the wrong type or too long comes back as a marker that fails to
/// parse, so it is treated as garbage without shipping it.
///
/// A lease is always a string with a TTL; anything else under the lease key
/// (no TTL, another type) would make every process wait, so it is deleted
/// here, atomically, and reported as -3.
const READ_SCRIPT: &str = with_get!(
    r"
local value, wrong_type = get(KEYS[1])
if wrong_type or (value and string.len(value) > tonumber(ARGV[1])) then value = '!' end
local lease = redis.call('PTTL', KEYS[2])
if lease >= 0 and select(2, get(KEYS[2])) then lease = -1 end
if lease == -1 then
  redis.call('DEL', KEYS[2])
  lease = -3
end
return {value, redis.call('PTTL', KEYS[1]), lease}
"
);
/// The lease TTL [`READ_SCRIPT`] reports for a garbage lease it deleted.
pub(super) const LEASE_CLEARED: i64 = -3;

/// Writes the token (ARGV[1], TTL ARGV[2] ms, written with a margin of
/// ARGV[5] ms) unless the stored token ends at least as late (its TTL plus
/// its writer's margin) and is not one the writer may replace: ARGV[6]
/// onwards are the ids of tokens its cache has had or that it could not
/// read. Only a well-formed value is kept: format 1, a numeric margin, a hex
/// id, at most ARGV[4] bytes; anything else is garbage and overwritten.
/// Releases the lease if it is still the writer's (ARGV[3]). Returns `{1}`
/// when it wrote, and otherwise `{0, value, pttl}`: the token it kept,
/// which the writer hands its cache instead of its own older one.
///
/// So a slow holder whose lease expired never overwrites the newer token of
/// the holder that took over, and a refresh always replaces the token it
/// refreshes.
const WRITE_SCRIPT: &str = with_get!(
    r"
local write = true
local current = get(KEYS[1])
if current and string.len(current) <= tonumber(ARGV[4]) then
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' and stored['v'] == 1
    and type(stored['margin_ms']) == 'number' and type(stored['id']) == 'string'
    and string.len(stored['id']) <= 64 and string.match(stored['id'], '^%x+$') then
    local replaceable = false
    for i = 6, #ARGV do
      if stored['id'] == ARGV[i] then replaceable = true end
    end
    local stored_end = redis.call('PTTL', KEYS[1]) + stored['margin_ms']
    if not replaceable and stored_end >= tonumber(ARGV[2]) + tonumber(ARGV[5]) then
      write = false
    end
  end
end
if get(KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
if write then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, false, 0}
end
return {0, current, redis.call('PTTL', KEYS[1])}
"
);

/// Releases the lease only if it is still ours: a holder whose lease expired
/// must not delete the next holder's.
const RELEASE_SCRIPT: &str = with_get!(
    r"
if get(KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"
);

/// A script, run by its hash and sent whole only when Redis does not have it
/// yet: `EVALSHA`, then `EVAL`, never `SCRIPT LOAD`, so that the ACL needs
/// no more than [`ACL_COMMANDS`].
pub(super) struct LuaScript {
    pub(super) name: &'static str,
    pub(super) source: &'static str,
    pub(super) hash: String,
}

impl LuaScript {
    fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            hash: redis::Script::new(source).get_hash().to_owned(),
        }
    }
}

/// The store's three scripts. `name` says what each runs, for the warning
/// when the ACL refuses one of its commands.
pub(super) struct Scripts {
    pub(super) read: LuaScript,
    pub(super) write: LuaScript,
    pub(super) release: LuaScript,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            read: LuaScript::new("read script (GET, PTTL, DEL)", READ_SCRIPT),
            write: LuaScript::new("write script (GET, PTTL, SET, DEL)", WRITE_SCRIPT),
            release: LuaScript::new("release script (GET, DEL)", RELEASE_SCRIPT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acl_names_every_command_the_scripts_run() {
        let scripts = [READ_SCRIPT, WRITE_SCRIPT, RELEASE_SCRIPT].concat();
        let mut called: Vec<String> = scripts
            .split("redis.")
            .skip(1)
            .filter_map(|call| call.split('\'').nth(1))
            .map(|command| format!("+{}", command.to_lowercase()))
            .collect();
        called.sort();
        called.dedup();
        for command in &called {
            assert!(
                ACL_COMMANDS.split(' ').any(|rule| rule == command),
                "{command} is missing from {ACL_COMMANDS}"
            );
        }
        assert_eq!(called, ["+del", "+get", "+pttl", "+set"]);
    }
}
