//! Bitrix24 portal and OAuth emulator. (being written)
