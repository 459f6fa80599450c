//! TEMPORARY STUB
use super::*;
pub struct MemoryStore;
impl Storage for MemoryStore {
    fn create_account(&self, _: &str, _: &StoredCredentials) -> Result<bool> {
        todo!()
    }
    fn get_credentials(&self, _: &str) -> Result<Option<StoredCredentials>> {
        todo!()
    }
    fn set_credentials(&self, _: &str, _: &StoredCredentials) -> Result<bool> {
        todo!()
    }
    fn delete_account(&self, _: &str) -> Result<bool> {
        todo!()
    }
    fn list_accounts(&self, _: &str) -> Result<Vec<String>> {
        todo!()
    }
    fn get_roster(&self, _: &str) -> Result<Roster> {
        todo!()
    }
    fn put_roster_item(&self, _: &str, _: &RosterItem) -> Result<u64> {
        todo!()
    }
    fn remove_roster_item(&self, _: &str, _: &str) -> Result<u64> {
        todo!()
    }
    fn push_offline(&self, _: &str, _: &str) -> Result<u64> {
        todo!()
    }
    fn list_offline(&self, _: &str) -> Result<Vec<(u64, String)>> {
        todo!()
    }
    fn remove_offline(&self, _: &str, _: &[u64]) -> Result<()> {
        todo!()
    }
    fn count_offline(&self, _: &str) -> Result<usize> {
        todo!()
    }
    fn get_item(&self, _: &str, _: &str, _: &str) -> Result<Option<String>> {
        todo!()
    }
    fn put_item(&self, _: &str, _: &str, _: &str, _: &str) -> Result<()> {
        todo!()
    }
    fn delete_item(&self, _: &str, _: &str, _: &str) -> Result<bool> {
        todo!()
    }
    fn list_items(&self, _: &str, _: &str) -> Result<Vec<(String, String)>> {
        todo!()
    }
    fn flush(&self) -> Result<()> {
        todo!()
    }
}
